"""Target patterns: every accepted form parses and matches as documented; malformed ones explain."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_scope.config import ACCEPTED_FORMS, PatternError, parse_pattern, parse_patterns


@pytest.mark.parametrize(
    ("pattern", "module", "qualname", "expected"),
    [
        ("pkg.mod:function", "pkg.mod", "function", True),
        ("pkg.mod:function", "pkg.mod", "other", False),
        ("pkg.mod:Class.method", "pkg.mod", "Class.method", True),
        ("pkg.mod:Class.*", "pkg.mod", "Class.method", True),
        ("pkg.mod:Class.*", "pkg.mod", "Class.Inner.method", True),
        ("pkg.mod:Class.*", "pkg.mod", "Classy.method", False),
        ("pkg.mod:*", "pkg.mod", "anything", True),
        ("pkg.mod", "pkg.mod", "Class.method", True),
        ("pkg.mod", "pkg.mod.sub", "f", False),
        ("pkg.*", "pkg", "f", True),
        ("pkg.*", "pkg.a.b", "C.m", True),
        ("pkg.*", "pkgx", "f", False),
        ("pkg.mod:function@15+22", "pkg.mod", "function", True),
    ],
)
def test_pattern_matches_as_documented(pattern: str, module: str, qualname: str, expected: bool) -> None:
    assert parse_pattern(pattern).matches(module, qualname) is expected


def test_line_numbers_are_parsed_sorted_and_deduplicated() -> None:
    assert parse_pattern("a.b:f@22+15+22").lines == (15, 22)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "pkg mod",
        "pkg.mod:",
        "pkg.mod:1f",
        "pkg.*:f",
        "pkg.mod:f@",
        "pkg.mod:f@0",
        "pkg.mod:*@3",
        ":f",
        "pkg..mod",
        "otel_scope.api:trace",
        "pkg.mod:Class.*.x",
    ],
)
def test_malformed_pattern_is_rejected_with_the_accepted_forms(bad: str) -> None:
    with pytest.raises(PatternError) as info:
        parse_pattern(bad)
    assert ACCEPTED_FORMS in str(info.value)
    assert repr(bad) in str(info.value)


def test_comma_separated_list_ignores_blanks() -> None:
    assert [p.text for p in parse_patterns("a.b:f, ,c.*")] == ["a.b:f", "c.*"]


@given(st.text(max_size=40))
def test_parsing_never_fails_with_anything_but_pattern_error(text: str) -> None:
    try:
        parse_pattern(text)
    except PatternError:
        pass
