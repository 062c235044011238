/* SPDX-License-Identifier: MIT */
/*
 * engine_cli.h - `tunad train` and `tunad generate`: the engine from the
 * command line, without the daemon, its database or HTTP.
 */
#ifndef TUNA_SRV_ENGINE_CLI_H
#define TUNA_SRV_ENGINE_CLI_H

/* Runs the subcommand in argv[1] ("train" or "generate") with the options
 * after it. Returns the process exit status: 0 success, 1 failure, 2 usage
 * error, 130 interrupted. Text goes to stdout, progress and errors to
 * stderr. */
int srv_engine_cli(int argc, char **argv);

#endif
