"""Target patterns: which functions otel-scope instruments.

Accepted forms (see the README's "Target patterns")::

    pkg.mod:function        pkg.mod:Class.method      pkg.mod:Class.*
    pkg.mod:*               pkg.mod  (same as pkg.mod:*)
    pkg.*                   every module below pkg, and pkg itself
    pkg.mod:function@15+22  lines 15 and 22 of the file get line events

A pattern is parsed once into a :class:`TargetPattern`; matching is then plain string work, with
no imports, so patterns can name modules that do not exist yet.
"""

from __future__ import annotations

import re
from typing import NamedTuple

ACCEPTED_FORMS = (
    "pkg.mod:function, pkg.mod:Class.method, pkg.mod:Class.*, pkg.mod:*, pkg.*, pkg.mod, "
    "and pkg.mod:function@15+22 for line events"
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*(\.\*)?$")
_ATTR_RE = re.compile(rf"^(\*|{_IDENT}(\.{_IDENT})*(\.\*)?)$")
_LINES_RE = re.compile(r"^[1-9][0-9]*(\+[1-9][0-9]*)*$")

# Packages that a wildcard never reaches into: instrumenting our own machinery (or the SDK that
# carries our data) from inside would recurse. A pattern that names them explicitly is refused
# for otel_scope and allowed for the others.
_NEVER = ("otel_scope",)


class PatternError(ValueError):
    """A target pattern that is not one of the accepted forms."""

    def __init__(self, pattern: str, why: str) -> None:
        self.pattern = pattern
        super().__init__(f"target pattern {pattern!r} {why}; accepted forms: {ACCEPTED_FORMS}")


class TargetPattern(NamedTuple):
    """One parsed target pattern.

    ``module`` is the dotted module name (without a trailing ``.*``); ``module_prefix`` is true for
    ``pkg.*``. ``attr`` is the qualified name inside the module (``"Class.method"``), or ``None``
    for every function; ``attr_prefix`` is true for ``Class.*``. ``lines`` are line numbers for
    line events. A named tuple: compared and hashed by value, and cheaper than a dataclass to create at start.
    """

    text: str
    module: str
    module_prefix: bool = False
    attr: str | None = None
    attr_prefix: bool = False
    lines: tuple[int, ...] = ()

    # -- matching ----------------------------------------------------------------------------
    def matches_module(self, module_name: str) -> bool:
        """Whether functions of ``module_name`` can match this pattern."""
        if module_name == self.module:
            return True
        return self.module_prefix and module_name.startswith(self.module + ".")

    def matches(self, module_name: str, qualname: str) -> bool:
        """Whether the function ``qualname`` defined in ``module_name`` is selected."""
        if not self.matches_module(module_name):
            return False
        if self.attr is None:
            return True
        if self.attr_prefix:
            return qualname.startswith(self.attr + ".")
        return qualname == self.attr

    @property
    def is_wildcard(self) -> bool:
        """True when the pattern selects by wildcard rather than naming one function."""
        return self.attr is None or self.attr_prefix

    @property
    def names_function(self) -> bool:
        """True when the pattern names exactly one function or method."""
        return not self.module_prefix and not self.is_wildcard

    def __str__(self) -> str:
        return self.text


def parse_pattern(text: str) -> TargetPattern:
    """Parse one pattern, raising :class:`PatternError` with the accepted forms if malformed."""
    raw = text
    text = text.strip()
    if not text:
        raise PatternError(raw, "is empty")
    lines: tuple[int, ...] = ()
    if "@" in text:
        text, _, line_part = text.partition("@")
        if not _LINES_RE.match(line_part):
            raise PatternError(raw, "has line numbers that are not positive integers joined by '+'")
        lines = tuple(sorted({int(n) for n in line_part.split("+")}))
    module, sep, attr = text.partition(":")
    if not _MODULE_RE.match(module):
        raise PatternError(raw, "does not start with a dotted module name")
    module_prefix = module.endswith(".*")
    if module_prefix:
        module = module[:-2]
        if sep:
            raise PatternError(raw, "combines 'pkg.*' with ':'")
    if module.split(".")[0] in _NEVER:
        raise PatternError(raw, "names otel-scope itself, which cannot trace its own machinery")
    if sep and not _ATTR_RE.match(attr):
        raise PatternError(raw, "has a function part that is not a dotted name, 'Class.*' or '*'")
    if not sep or attr == "*":
        attr_value: str | None = None
        attr_prefix = False
    elif attr.endswith(".*"):
        attr_value, attr_prefix = attr[:-2], True
    else:
        attr_value, attr_prefix = attr, False
    if lines and (attr_value is None or attr_prefix or module_prefix):
        raise PatternError(raw, "asks for line events but does not name a single function")
    return TargetPattern(
        text=text if not lines else f"{text}@{'+'.join(map(str, lines))}",
        module=module,
        module_prefix=module_prefix,
        attr=attr_value,
        attr_prefix=attr_prefix,
        lines=lines,
    )


def parse_patterns(value: str | list[str] | tuple[str, ...]) -> tuple[TargetPattern, ...]:
    """Parse a comma-separated string (or a list) of patterns; blanks are ignored."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(parse_pattern(item) for item in items if item.strip())


# Under a wildcard, dunders are skipped (wrapping __repr__ or __getattribute__ invites recursion
# and noise) except these, which are ordinary entry points into user code. Runtime discovery,
# the compile-time rewriter and `otel-scope plan` all ask :func:`wildcard_skips`.
WILDCARD_DUNDERS = frozenset({"__init__", "__call__", "__enter__", "__exit__", "__aenter__", "__aexit__"})


def wildcard_skips(qualname: str) -> bool:
    """Whether a wildcard leaves ``qualname`` alone (a dunder other than the entry points)."""
    name = qualname.rsplit(".", 1)[-1]
    return name.startswith("__") and name.endswith("__") and name not in WILDCARD_DUNDERS


def never_instrumented(module_name: str) -> bool:
    """Modules otel-scope refuses to instrument whatever the patterns say."""
    return module_name.split(".")[0] in _NEVER
