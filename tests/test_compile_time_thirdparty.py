"""A real library's own test suite passes the same with every one of its modules rewritten."""

from __future__ import annotations

import re

import pytest

import thirdparty_suites


@pytest.mark.slow
def test_toolz_suite_passes_the_same_fully_instrumented():
    # dev.py test fetches the sdist before the suite starts; a bare pytest run fetches it here
    thirdparty_suites.fetch(thirdparty_suites.LIBRARIES["toolz"])
    result = thirdparty_suites.compare("toolz", level="expressions")
    assert result["plain"].get("passed", 0) > 100
    assert result["rewritten"] == result["plain"], result
    counts = dict(re.findall(r"(\w+)=(\d+)", result["instrumentation"]))
    assert int(counts["functions"]) > 100
    assert int(counts["events"]) > 10_000


def test_compile_time_wildcards_skip_dunders_as_runtime_wildcards_do() -> None:
    """markupsafe's Markup defines __add__, __mod__, __html__, __getitem__...: a wildcard must
    rewrite its ordinary methods and __init__-like entry points only, the runtime rule."""
    import inspect

    import markupsafe

    from otel_scope.compile_time.rewriter import rewrite_source
    from otel_scope.targets.plan import CapturePlan

    source = inspect.getsource(markupsafe)
    result = rewrite_source(source, markupsafe.__file__, "markupsafe", {"*": CapturePlan()})
    dunders = [q for q in result.instrumented if q.rsplit(".", 1)[-1].startswith("__")]
    assert "Markup.escape" in result.instrumented and "Markup.striptags" in result.instrumented
    assert all(q.rsplit(".", 1)[-1] in {"__init__", "__call__", "__enter__", "__exit__"} for q in dunders)
    assert "Markup.__add__" not in result.instrumented and "Markup.__html__" not in result.instrumented
