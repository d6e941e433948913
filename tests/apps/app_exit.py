"""Ends in the way argv[1] says: normal, exception, sys.exit, sigterm, explicit, request."""

import os
import signal
import sys
import time

from opentelemetry import trace
from svc.orders import Order, validate

how = sys.argv[1]
if how == "explicit":
    import otel_scope

    validate(Order(0, [1]))  # outside any session: not recorded in explicit mode
    with otel_scope.session("checkout-bug") as s:
        validate(Order(1, [1]))
    print("explicit", s.trace_id)
    sys.exit(0)
if how == "request":
    tracer = trace.get_tracer("fake.web.framework")
    for n in range(2):
        with tracer.start_as_current_span(f"GET /orders/{n}", kind=trace.SpanKind.SERVER):
            validate(Order(n, [1]))
    sys.exit(0)
validate(Order(1, [1]))
if how == "exception":
    validate(Order.empty(2))
elif how == "sys.exit":
    sys.exit(3)
elif how == "sigterm":
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
print("normal end")
