"""Leaves exitwork.RESOURCE to be closed by its finalizer at interpreter exit (it writes
"closed db" to the file argv[1]). The program's own excepthook keeps this script's globals, so
exitwork, alive until Python clears the globals of the modules still alive. With argv[2] ==
"recompile", Resource.close is recompiled on demand first (what a live 'targets add' does)."""

import sys

import exitwork


def report(kind, error, tb):
    sys.__excepthook__(kind, error, tb)


sys.excepthook = report
exitwork.RESOURCE = exitwork.Resource("db", open(sys.argv[1], "w"))  # noqa: SIM115 - closed at exit
if sys.argv[2:] == ["recompile"]:
    from otel_scope.compile_time import recompile
    from otel_scope.targets.plan import CapturePlan

    recompile(exitwork.Resource.close, CapturePlan(level="locals"))
print("running")
