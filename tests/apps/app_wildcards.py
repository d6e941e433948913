"""Real third-party code under a compile-time wildcard: namedtuples (rich, jinja2), attrs-made
``__init__`` methods, functions that read their frame (rich's ``Console._caller_frame_info``).

With ``--debug``, otel-scope's debug lines go to stderr as ``debug: ...`` from the start of the
program, so a test can count what was said about each function.
"""

import logging
import sys

if "--debug" in sys.argv:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("debug: %(message)s"))
    logger = logging.getLogger("otel_scope")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

import io

import attr
import jinja2
import rich.console


@attr.s(auto_attribs=True)
class Row:
    name: str
    n: int


console = rich.console.Console(file=io.StringIO(), width=40)
console.print("[b]hello[/b]", Row("a", 1))
print(jinja2.Template("{% for r in rows %}{{ r.name }}={{ r.n }} {% endfor %}").render(rows=[Row("a", 1)]))
print(len(console.file.getvalue()) > 0)
