#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Reference renderer for Tuna's chat-template tests.

Renders chat templates with the real jinja2 library the way Hugging Face
transformers' apply_chat_template does (transformers/utils/
chat_template_utils.py): ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True) with the loopcontrols extension and a "generation" tag,
the globals raise_exception and strftime_now, and a tojson filter that is
json.dumps(ensure_ascii=False, indent=...). Variables: messages, tools
(None unless given), documents (None), add_generation_prompt, bos_token and
eos_token when the model has them, plus extra keyword arguments.

Usage (Debian: apt-get install python3-jinja2):
  chat_reference.py generate DATA_DIR    (re)writes DATA_DIR/expected/*.txt
                                         from DATA_DIR/cases.tsv
  chat_reference.py render TEMPLATE MESSAGES_JSON [KWARGS_JSON|-] [gen]
                                         prints one rendering (or ERROR: ...)

cases.tsv columns (tab-separated, '#' comments): name, template file,
messages file, add_generation_prompt (0/1), bos token, eos token (a lone '-'
means undefined), kwargs file ('-' for none). A case whose rendering raises
gets "ERROR: <message>" as its expected text; the C test then checks that
the engine fails too.
"""
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(Extension):
    """{% generation %}...{% endgeneration %} renders its body, as the
    AssistantTracker extension of transformers does outside of
    return_assistant_tokens_mask."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(template, messages, add_generation_prompt=False, bos_token=None,
           eos_token=None, **kwargs):
    variables = dict(messages=messages, tools=None, documents=None,
                     add_generation_prompt=add_generation_prompt)
    if bos_token is not None:
        variables["bos_token"] = bos_token
    if eos_token is not None:
        variables["eos_token"] = eos_token
    variables.update(kwargs)
    return make_env().from_string(template).render(**variables)


def render_or_error(*args, **kwargs):
    try:
        return render(*args, **kwargs)
    except Exception as e:  # every failure is an expected "ERROR:" text
        return "ERROR: %s" % e


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def cases(data_dir):
    with open(os.path.join(data_dir, "cases.tsv"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, tmpl, msgs, gen, bos, eos, kw = line.split("\t")
            yield dict(name=name, template=tmpl, messages=msgs, gen=gen == "1",
                       bos=None if bos == "-" else bos,
                       eos=None if eos == "-" else eos,
                       kwargs=None if kw == "-" else kw)


def generate(data_dir):
    out_dir = os.path.join(data_dir, "expected")
    os.makedirs(out_dir, exist_ok=True)
    for c in cases(data_dir):
        tmpl = read(os.path.join(data_dir, "templates", c["template"]))
        msgs = json.loads(read(os.path.join(data_dir, "messages", c["messages"])))
        kw = json.loads(read(os.path.join(data_dir, "kwargs", c["kwargs"]))) if c["kwargs"] else {}
        text = render_or_error(tmpl, msgs, c["gen"], c["bos"], c["eos"], **kw)
        with open(os.path.join(out_dir, c["name"] + ".txt"), "w",
                  encoding="utf-8", newline="") as f:
            f.write(text)
        print("%-40s %s" % (c["name"], "error" if text.startswith("ERROR: ") else "%d bytes" % len(text)))


def main(argv):
    if len(argv) == 3 and argv[1] == "generate":
        generate(argv[2])
        return 0
    if len(argv) >= 4 and argv[1] == "render":
        tmpl = read(argv[2])
        msgs = json.loads(read(argv[3]))
        kw = json.loads(read(argv[4])) if len(argv) > 4 and argv[4] != "-" else {}
        gen = len(argv) > 5 and argv[5] == "gen"
        sys.stdout.write(render_or_error(tmpl, msgs, gen, **kw))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
