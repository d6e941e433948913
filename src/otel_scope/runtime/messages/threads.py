"""Threads and thread pools: a thread start or pool submit made by a traced call is a message.

The hand-off itself is patched by :mod:`otel_scope.runtime.propagation` (which carries the OTel
context into the thread); it calls :func:`handoff` through its ``handoff_hook``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from otel_scope.runtime.messages.model import (
    call_summary,
    callable_name,
    new_tag,
    receiving,
    record_sent,
    sender_of,
)
from otel_scope.runtime.propagation import Payload

_log = logging.getLogger("otel_scope")


def handoff(channel: str, ctx: Any, fn: Callable[..., Any], payload: Payload) -> Callable[..., Any] | None:
    """``propagation.handoff_hook``: record a thread start or pool submit made by a traced call.

    ``payload`` is ``(target, args, kwargs)``, what the summary shows. Returns ``fn`` wrapped so
    that the worker's first otel-scope span receives the message, or None (nothing to record).
    """
    try:
        sender = sender_of(ctx)
        if sender is None:
            return None
        span, name = sender
        target, args, kwargs = payload
        tag = new_tag(span, name, channel, call_summary(target, args, kwargs))
        record_sent(span, tag, callable_name(target))
        return receiving(fn, tag)
    except Exception:
        _log.debug("otel-scope could not record a %s hand-off", channel, exc_info=True)
        return None
