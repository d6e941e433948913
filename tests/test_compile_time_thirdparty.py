"""A real library's own test suite passes the same with every one of its modules rewritten."""

from __future__ import annotations

import re
import subprocess

import pytest

import thirdparty_suites


@pytest.mark.slow
def test_toolz_suite_passes_the_same_fully_instrumented():
    try:
        thirdparty_suites.fetch(thirdparty_suites.LIBRARIES["toolz"])
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot download toolz from PyPI: {exc}")
    result = thirdparty_suites.compare("toolz", level="expressions")
    assert result["plain"].get("passed", 0) > 100
    assert result["rewritten"] == result["plain"], result
    counts = dict(re.findall(r"(\w+)=(\d+)", result["instrumentation"]))
    assert int(counts["functions"]) > 100
    assert int(counts["events"]) > 10_000
