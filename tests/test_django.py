"""otel-scope over Django: its lazy settings object and its setup, on the real library.

``django.conf.settings`` is a ``LazyObject`` whose ``__class__`` is read through the settings
(they load, or raise before ``settings.configure()``); ``django.setup()`` configures logging,
which imports the handlers it names holding ``logging``'s lock.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from scope_run import run_instrumented, run_plain
from sdk import add_target


def test_a_wildcard_over_a_module_holding_lazy_settings_reads_nothing_through_them(
    memory, runtime_engine, caplog: pytest.LogCaptureFixture
) -> None:
    """``isinstance(settings, type)`` asks the lazy object for its ``__class__``: discovery made
    Django load its settings at import (or print a traceback, before ``settings.configure()``)."""
    from django.conf import settings
    from django.utils.functional import empty

    assert object.__getattribute__(settings, "_wrapped") is empty  # not configured in this process
    with caplog.at_level(logging.DEBUG, logger="otel_scope"):
        handle = add_target(runtime_engine, "django.conf:*")
    assert object.__getattribute__(settings, "_wrapped") is empty  # still not loaded
    assert "django.conf.LazySettings.configure" in handle.functions
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    handle.remove()


def test_django_setup_under_a_package_wide_hybrid_target_ends_as_without_otel_scope(
    tmp_path: Path,
) -> None:
    """``--scope-mode hybrid --scope-targets 'django.*'`` hung for good in ``django.setup()``:
    an escalation recompiling under the engine's lock, and an import under ``logging``'s lock
    waiting for it (see tests/test_escalation.py), which SIGTERM could not end either."""
    plain = run_plain("app_django_setup.py", tmp_path)
    flags = ["--scope-mode", "hybrid", "--scope-targets", "django.*"]
    traced = run_instrumented(
        "app_django_setup.py", flags, {"OTEL_SCOPE_CALL_SAMPLING": "true"}, tmp_path, timeout=60
    )
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == (0, "ready\n")
    assert "Traceback" not in traced.stderr, traced.stderr
    assert traced.session_trace_id is not None
