"""How otel-scope talks to the user of a traced program: one line per problem, on stderr.

OTel's exporters log a warning per retry and a traceback per failed batch; with a collector that
is down that is a wall of text in the user's terminal. :func:`quiet_export_errors` replaces it
with one line naming where export failed, then stays silent.
"""

from __future__ import annotations

import logging
import sys

from otel_scope import _forksafe

PREFIX = "otel-scope: "
_SUMMARY_CHARS = 200

_EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
)


def say(message: str) -> None:
    """Print one otel-scope line to stderr; never raises (stderr may be closed)."""
    try:
        print(PREFIX + message, file=sys.stderr, flush=True)
    except Exception:
        pass


class _OneLineExportFailure(logging.Filter):
    """Turns the exporters' retry warnings and tracebacks into a single line."""

    def __init__(self) -> None:
        super().__init__()
        self._said = False
        self._lock = _forksafe.lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        with self._lock:
            if not self._said:
                self._said = True
                say(
                    f"could not export spans ({_summary(record)}); is the collector running? "
                    "The program is not affected; spans that cannot be sent are counted at exit."
                )
        return False


def _summary(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:
        text = str(record.msg)
    if not text:
        return record.name
    first = text.splitlines()[0]
    if len(first) <= _SUMMARY_CHARS:
        return first
    # Cut at a word boundary: a cut inside "127.0.0.1:4317" reads as a wrong address.
    return first[: _SUMMARY_CHARS + 1].rsplit(" ", 1)[0] + " ..."


_filter = _OneLineExportFailure()


def quiet_export_errors() -> None:
    """Install the one-line filter on the exporters' loggers (idempotent)."""
    for name in _EXPORT_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
