"""``otel-scope plan``: the planner's decisions for a configuration, without running the program."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OTEL_SCOPE = str(Path(sys.executable).parent / "otel-scope")


def plan(*flags: str, cwd: Path = EXAMPLES) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(cwd)}
    return subprocess.run([OTEL_SCOPE, "plan", *flags], cwd=cwd, env=env, capture_output=True, text=True)


def rows(*flags: str) -> dict[str, dict]:
    result = plan("--json", *flags)
    assert result.returncode == 0, result.stderr
    return {row["function"]: row for row in json.loads(result.stdout)}


def test_plan_reads_pyproject_and_explains_each_function() -> None:
    by_function = rows()
    check = by_function["shop.inventory.InventoryChecker.check_stock"]
    # a locals target (compile-time) and a state target (runtime) at once: hybrid, one span per call
    assert check["mechanism"] == "hybrid" and check["capture"] == "all locals (locals)"
    assert any("development" in why for why in check["why"])
    assert by_function["shop.orders.OrderReceiver.receive"]["mechanism"] == "runtime"


def test_plan_in_production_keeps_compile_time_off_and_says_why() -> None:
    check = rows("--scope-environment", "production")["shop.inventory.InventoryChecker.check_stock"]
    assert check["mechanism"] == "runtime"
    assert any("production" in why for why in check["why"])


def test_plan_flags_override_the_file_and_unknown_modules_are_pending() -> None:
    by_function = rows("--scope-targets", "nosuch.module:*", "--scope-locals", "")
    assert by_function["nosuch.module:*"]["mechanism"] == "pending"
    assert "shop.orders.OrderReceiver.receive" not in by_function


def test_plan_does_not_import_the_target_modules(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text("raise SystemExit('imported!')\ndef f():\n    return 1\n")
    result = plan("--json", "--scope-targets", "boom:f", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["function"] == "boom.f"


def test_plan_rejects_a_bad_value_in_one_line() -> None:
    result = plan("--scope-level", "everything")
    assert result.returncode == 1
    assert (
        result.stderr.count("\n") == 1 and "accepted: boundaries, locals, lines, expressions" in result.stderr
    )


def test_compiled_modules_are_named_as_such_not_as_missing() -> None:
    """black ships mypyc-compiled modules (.so) on PyPI."""
    by_function = rows("--scope-targets", "black:format_str,black.linegen:*")
    for module in ("black", "black.linegen"):
        assert by_function[module]["mechanism"] == "runtime"
        assert by_function[module]["why"] == [
            "compiled module (.so): runtime spans only for Python-level callables; no locals"
        ]


def test_an_exact_name_with_no_definition_in_its_module_is_planned_as_a_wrapper_at_that_name_only() -> None:
    """jinja2.utils._PassArg holds enum's own Enum._generate_next_value_ (copied in by enum at
    run time): plan, which reads the source without importing, names the wrapper it would get."""
    row = rows("--scope-targets", "jinja2.utils:_PassArg._generate_next_value_", "--scope-locals", "")[
        "jinja2.utils._PassArg._generate_next_value_"
    ]
    assert row["mechanism"] == "runtime"
    assert "its runtime span is a wrapper (this name only)" in row["why"][-1]
    assert not any("through the function's code" in why for why in row["why"])
