"""otel-scope as an OpenTelemetry distro: what ``opentelemetry-instrument`` loads.

The stock CLI runs, in the traced process: the distro, one configurator, then every instrumentor.
Whichever distro wins (``opentelemetry-distro`` may be installed too), instrumentors from every
package run, so the essential work (settings, targets, import hook, session) is done in
:class:`ScopeInstrumentor`. :class:`~otel_scope.distro.configurator.ScopeConfigurator` guards the
SDK set-up: it drops unknown exporter names (one would abort the SDK's whole initialisation),
picks the local store when no collector is configured or reachable, and bounds export time so a
collector that is down never delays exit by more than a couple of seconds.

This package is imported by every start of the stock CLI, twice: in the CLI's own process (for
the flag names of ``_cli_flags``) and in the program. So it imports only what the stock CLI has
loaded already, and the one-line reporting; the settings, the SDK configurator and the
instrumentation are imported by the code that uses them, and ``--scope-mode off`` never imports
the instrumentation at all (measured by ``benchmarks/bench_startup.py``).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

# Both modules start with a file-level "# type: ignore", so mypy sees them as empty and the two
# classes as Any, which a strict module may not subclass: hence the "misc" ignores on ours below.
# A release that drops it would make all these ignores unused, hence "unused-ignore".
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined, unused-ignore]
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined, unused-ignore]

from otel_scope.distro.reporting import quiet_export_errors, say

if TYPE_CHECKING:
    from otel_scope.config import Settings

_log = logging.getLogger("otel_scope")


class _State:
    settings: Settings | None = None
    error: str | None = None
    loaded = False


_state = _State()


def settings_once() -> Settings | None:
    """Load and validate the settings once per process; report a bad value in one line."""
    if not _state.loaded:
        _state.loaded = True
        from otel_scope.config import ConfigError, load_settings

        try:
            _state.settings = load_settings()
        except ConfigError as exc:
            _state.error = str(exc)
            say(f"{exc}. otel-scope is off for this run; the program runs unchanged.")
    return _state.settings


class ScopeDistro(BaseDistro):  # type: ignore[misc, unused-ignore]  # Any: see the imports
    """Selects otel-scope's configurator unless the user chose another."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "otel_scope")


class ScopeInstrumentor(BaseInstrumentor):  # type: ignore[misc, unused-ignore]  # Any: see the imports
    """Starts otel-scope in the traced process: targets, import hook, session, control channel."""

    def instrumentation_dependencies(self) -> tuple[str, ...]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        settings = settings_once()
        quiet_export_errors()
        if settings is None or settings.mode == "off":
            return
        try:
            from otel_scope import api
            from otel_scope.distro.lifecycle import start_process
            from otel_scope.pipeline import suppressed

            with suppressed():  # applying targets (json:*, logging:*, ...) must not trace itself
                scope = api.start(settings, say)
            start_process(scope, sys.argv)
        except Exception as exc:  # otel-scope must never stop the program from starting
            say(f"could not start ({type(exc).__name__}: {exc}); the program runs without otel-scope.")
            _log.debug("otel-scope start failed", exc_info=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        from otel_scope import api

        api.shutdown()
