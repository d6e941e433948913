"""Every span name, attribute and event name that otel-scope emits.

This module is the single source of the emitted names; ``docs/emitted-data.md`` documents each
one and a test keeps the two in step. Current OpenTelemetry semantic conventions are used where
one exists (``code.*``, ``exception.*``); everything else carries the ``otel_scope.`` prefix.
Renaming anything here is a breaking change for users' queries and dashboards.
"""

from __future__ import annotations

# --- Semantic-convention attributes (stable OTel names) -------------------------------------
CODE_FUNCTION_NAME = "code.function.name"  # fully qualified: "shop.orders.OrderReceiver.receive"
CODE_FILE_PATH = "code.file.path"  # absolute path of the source file
CODE_LINE_NUMBER = "code.line.number"  # "def" line on spans; the event's line on events
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"

# --- Provenance: on every span and event otel-scope makes ------------------------------------
MECHANISM = "otel_scope.mechanism"  # "runtime" or "compile_time"
MECHANISM_RUNTIME = "runtime"
MECHANISM_COMPILE_TIME = "compile_time"
SESSION_ID = "otel_scope.session.id"  # 32 hex digits: the session's trace ID
SESSION_NAME = "otel_scope.session.name"
TARGET = "otel_scope.target"  # the pattern that selected this function

# --- Runtime spans ---------------------------------------------------------------------------
ARG_PREFIX = "otel_scope.arg."  # + parameter name: the argument's safe repr
RETURN_VALUE = "otel_scope.return"  # safe repr of the return value
RETURN_TYPE = "otel_scope.return.type"
YIELD_COUNT = "otel_scope.yield.count"  # generators: items produced before the span ended
GENERATOR_END = "otel_scope.generator.end"  # "exhausted", "closed", "cancelled" or "error"
# bool, on a call asyncio cancelled (CancelledError left it): control flow, not a failure, so
# no ERROR status and no exception event (as opentelemetry-instrumentation-asyncio does).
CANCELLED = "otel_scope.cancelled"
# string, on a call still running when its process ended abruptly (``os._exit(3)``,
# ``signal SIGTERM``): the span ends at that moment, so it is exported (OTel exports only ended
# spans) with what it had recorded, instead of being lost without a trace.
UNFINISHED = "otel_scope.unfinished"

# --- Session root span -----------------------------------------------------------------------
SESSION_SPAN_NAME = "otel_scope.session"
SESSION_KIND = "otel_scope.session.kind"  # "process", "request" or "explicit"
SESSION_COMMAND = "otel_scope.session.command"  # argv of the traced process
SESSION_EXIT = "otel_scope.session.exit"  # "normal", "exception", "signal SIGTERM", "exec"
SESSION_DROPPED_SPANS = "otel_scope.session.dropped_spans"  # int: spans the export pipeline lost
SESSION_DROPPED_REASONS = "otel_scope.session.dropped_reasons"  # ["<destination>: N <reason>", ...]
# A forked child's own counts (sampling, drops; the session attributes above), from fork to exit.
PROCESS_SPAN_NAME = "otel_scope.process"

# --- Compile-time events ---------------------------------------------------------------------
EVENT_LOCALS = "otel_scope.locals"  # one event per executed capture point (a line)
EVENT_LINE = "otel_scope.line"  # a chosen line was reached
EVENT_EXPRESSION = "otel_scope.expression"  # an expression's value (level "expressions")
EVENT_RETURN = "otel_scope.return"  # compile-time: the line a value was returned from
VAR_PREFIX = "otel_scope.var."  # + variable name: safe repr of the new value
VAR_TYPE_SUFFIX = ".type"  # otel_scope.var.<name>.type: the value's type name
EXPRESSION_TEXT = "otel_scope.expression.text"
EXPRESSION_VALUE = "otel_scope.expression.value"
HIT = "otel_scope.hit"  # how many times this capture point ran in this call (1-based)

# --- Budgets: what was not recorded, and why (on the span) ------------------------------------
CAPTURES_RECORDED = "otel_scope.captures.recorded"
CAPTURES_DROPPED = "otel_scope.captures.dropped"
CAPTURES_DROPPED_REASON = "otel_scope.captures.dropped_reason"  # "loop_sampling", "max_events", ...
RATE_LIMITED = "otel_scope.rate_limited"  # calls not captured since the last recorded one
REDACTED_COUNT = "otel_scope.redacted"  # values replaced by the redaction marker
SAMPLED_OUT = "otel_scope.sampled_out"  # calls of this function call sampling left out before this one
SAMPLING_LATE = "otel_scope.sampling.late"  # a sampled-out call that raised: span made as it failed

# --- Call sampling totals (on the session root span, at its end) ------------------------------
SAMPLING_CALLS = "otel_scope.sampling.calls"  # calls of sampled functions seen
SAMPLING_SAMPLED_OUT = "otel_scope.sampling.sampled_out"  # of those, calls not recorded
SAMPLING_FUNCTIONS = "otel_scope.sampling.functions"  # functions under call sampling
SAMPLING_FUNCTIONS_SAMPLED_OUT = "otel_scope.sampling.functions_sampled_out"  # with calls left out
SAMPLING_TOP = "otel_scope.sampling.top"  # ["function=count", ...], most left out first
SAMPLING_INTERVAL_MS = "otel_scope.sampling.interval_ms"  # the adapted interval between kept calls

# --- State before/after (issue "State and messages") -----------------------------------------
EVENT_STATE = "otel_scope.state"  # one event per changed attribute of self
STATE_ATTRIBUTE = "otel_scope.state.attribute"
STATE_BEFORE = "otel_scope.state.before"
STATE_AFTER = "otel_scope.state.after"

# --- Messages between components -------------------------------------------------------------
EVENT_MESSAGE_SENT = "otel_scope.message.sent"
EVENT_MESSAGE_RECEIVED = "otel_scope.message.received"
MESSAGE_ID = "otel_scope.message.id"
MESSAGE_CHANNEL = "otel_scope.message.channel"  # "queue.Queue", "asyncio.Queue", "executor", ...
MESSAGE_SUMMARY = "otel_scope.message.summary"
MESSAGE_FROM = "otel_scope.message.from"  # code.function.name of the sender
MESSAGE_TO = "otel_scope.message.to"  # code.function.name of the receiver

# --- Escalation and exception capture (issue "Live control") ---------------------------------
EVENT_ESCALATION = "otel_scope.escalation"
ESCALATION_REASON = "otel_scope.escalation.reason"  # "exception" or "slow"
ESCALATION_CALLS = "otel_scope.escalation.calls"
EVENT_EXCEPTION_FRAME = "otel_scope.exception.frame"  # locals of one traceback frame
