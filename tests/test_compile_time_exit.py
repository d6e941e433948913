"""Rewritten code called by a finalizer at interpreter exit runs as the untraced code does.

Python sets every module global to None as the interpreter exits (names starting with "_" first)
while finalizers still run. Rewritten code read its probe from such a global
(``_otel_scope_p_<n>``), so a captured function a finalizer called then raised
``AttributeError: 'NoneType' object has no attribute 'on'`` ("Exception ignored in ... __del__"
on stderr) and the finalizer's work was not done. The probe now lives among the code's constants.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scope_run import run_instrumented, run_plain

FLAGS = {
    "compile_time": ["--scope-mode", "compile_time", "--scope-locals", "exitwork:Resource.close"],
    "hybrid": [
        *("--scope-mode", "hybrid", "--scope-targets", "exitwork:Resource.close"),
        *("--scope-locals", "exitwork:Resource.close"),
    ],
}


@pytest.mark.parametrize("mode", sorted(FLAGS))
def test_a_captured_method_a_finalizer_calls_at_exit_does_its_work_and_raises_nothing(
    mode: str, tmp_path: Path
) -> None:
    log = tmp_path / "closed.txt"
    plain = run_plain("app_finalizer_exit.py", tmp_path, argv=[str(log)])
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, "running\n", "")
    assert log.read_text() == "closed db\n"
    log.unlink()
    cache = tmp_path / "cache"
    for run in ("rewritten", "from the rewrite cache"):
        env = {"XDG_CACHE_HOME": str(cache)}
        traced = run_instrumented("app_finalizer_exit.py", FLAGS[mode], env, tmp_path, argv=[str(log)])
        assert (traced.returncode, traced.stdout) == (0, "running\n"), run
        assert traced.stderr_without_session_line == "", run
        assert log.read_text() == "closed db\n", run
        log.unlink()
    assert list(cache.rglob("exitwork-*.bin"))  # the second run read it


def test_a_function_recompiled_on_demand_that_a_finalizer_calls_at_exit_raises_nothing(
    tmp_path: Path,
) -> None:
    log = tmp_path / "closed.txt"
    flags = ["--scope-mode", "compile_time", "--scope-locals", "exitwork:Resource.__init__"]
    traced = run_instrumented("app_finalizer_exit.py", flags, {}, tmp_path, argv=[str(log), "recompile"])
    assert (traced.returncode, traced.stdout, traced.stderr_without_session_line) == (0, "running\n", "")
    assert log.read_text() == "closed db\n"


@pytest.mark.parametrize("mode", ["compile_time", "hybrid"])
def test_a_spawn_pool_closed_at_exit_under_captured_multiprocessing_prints_nothing(
    mode: str, tmp_path: Path
) -> None:
    """Every Connection a spawn pool leaves to be closed at exit calls its captured _close from
    ``Connection.__del__``: each printed 'Exception ignored in ... AttributeError'."""
    plain = run_plain("app_pool_exit.py", tmp_path)
    flags = ["--scope-mode", mode, "--scope-locals", "multiprocessing.*"]
    if mode == "hybrid":
        flags += ["--scope-targets", "multiprocessing.*"]
    traced = run_instrumented("app_pool_exit.py", flags, {"OTEL_SCOPE_CALL_SAMPLING": "true"}, tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == (0, "32\n")
    assert traced.stderr_without_session_line == plain.stderr == ""
