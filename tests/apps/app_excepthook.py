"""Calls sys.excepthook itself (as IPython, logging handlers and library tests do), then dies of
an exception whose __str__ notes every caller that is otel-scope's code."""

import inspect
import sys

from svc.orders import Order, validate

NOTES = sys.argv[1]


class Loud(Exception):
    def __str__(self):
        callers = [f.filename for f in inspect.stack()[1:] if "otel_scope" in f.filename]
        if callers:
            with open(NOTES, "a") as fh:
                fh.write("otel-scope called __str__ from " + callers[0] + "\n")
        return "loud message"


validate(Order(1, [1]))
try:
    raise ValueError("handled")
except ValueError:
    print("before manual hook", file=sys.stderr, flush=True)
    sys.excepthook(*sys.exc_info())
    print("after manual hook", file=sys.stderr, flush=True)
raise Loud("x")
