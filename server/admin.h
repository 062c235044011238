/* SPDX-License-Identifier: MIT */
/*
 * admin.h - `tunad keys`, `tunad backup`, `tunad config check`. Each takes
 * argv with argv[0] the subcommand name and returns the exit status.
 */
#ifndef TUNA_SRV_ADMIN_H
#define TUNA_SRV_ADMIN_H

int srv_cmd_keys(int argc, char **argv);
int srv_cmd_backup(int argc, char **argv);
int srv_cmd_config(int argc, char **argv);

#endif
