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
