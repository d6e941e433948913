"""Calls liveshop.risky four times; the second call fails. Output must not change under otel-scope.

With APP_WAIT_FOR_ESCALATION set (only under otel-scope), the third call waits until the escalation's
recompile is done: it runs on otel-scope's worker, not in the failing call.
"""

import os
import sys

import liveshop


def wait_for_escalation():
    from otel_scope.api import get_scope
    from otel_scope.bootstrap import FailureDetail

    detail = get_scope().feature(FailureDetail)
    assert detail is not None and detail.escalator is not None
    assert detail.escalator.wait_idle(60)


def main():
    for n in (1, 2, 3, 4):
        try:
            print(n, liveshop.risky(n))
        except ZeroDivisionError as exc:
            print(n, "failed:", exc)
            if os.environ.get("APP_WAIT_FOR_ESCALATION"):
                wait_for_escalation()
    return 0


if __name__ == "__main__":
    sys.exit(main())
