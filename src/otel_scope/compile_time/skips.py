"""The functions compile-time capture leaves alone: each said once, at debug level, and counted.

A wildcard over real code meets many functions the rewriter cannot or must not rewrite: methods
made at run time (namedtuple's ``_make``, attrs' and dataclasses' ``__init__``: *generated*, with
no source of their own), functions that use ``exec``/``locals()``/frame access (a recorder local
in their frame would change what they see), objects with no Python function behind them, modules
libcst cannot parse. None of that is a problem with the program, and the same function used to be
reported up to three times (rewritten at import, recompiled, refused by the engine). Here:

* every skip is classified (:func:`classify`) by the one-line reason the rewriter or the
  recompiler gave;
* each function is logged once per class and run, at DEBUG (logger ``otel_scope``); a function a
  pattern names exactly also gets a WARNING, once: the user asked for that one;
* :func:`summary` returns one line for the skips noted since the last summary
  (``skipped 14 functions: 9 generated, 5 use exec/locals()/frame access (...)``), which the
  distro prints after start and, for modules imported later, at exit.

A reason that is not a known skip (a source file edited since it was imported, a closure that
changed) is not noted here: the caller says it in one line, as a real problem.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from otel_scope import _forksafe

_log = logging.getLogger("otel_scope")

GENERATED = "generated"
FRAME_ACCESS = "use exec/locals()/frame access"
NOT_A_FUNCTION = "not a Python function"
UNPARSABLE = "libcst cannot parse"
RESERVED_NAMES = "use otel-scope's reserved names"
REWRITER_ERROR = "rewriter errors (please report them)"

CLASSES = (GENERATED, FRAME_ACCESS, NOT_A_FUNCTION, UNPARSABLE, RESERVED_NAMES, REWRITER_ERROR)

# (phrase in the reason, class), first match wins. The phrases are those of the rewriter
# (``_unsafe``, ``rewrite_source``) and of on-demand recompilation (``recompile.py``).
_PHRASES = (
    ("no longer matches the running code", None),  # edited since imported: a real problem
    ("its closure changed in the source", None),
    ("not found in the current source", GENERATED),  # namedtuple, attrs: made from other text
    ("no source for ", GENERATED),  # dataclasses, exec: "<string>"
    ("is not a Python function", NOT_A_FUNCTION),
    ("libcst cannot parse", UNPARSABLE),
    ("which would see the recorder's local", FRAME_ACCESS),
    ("already uses the reserved name", RESERVED_NAMES),
    ("rewriting failed", REWRITER_ERROR),
    ("otel-scope could not rewrite", REWRITER_ERROR),
    ("did not keep the original lines", REWRITER_ERROR),
    ("read its statements differently", REWRITER_ERROR),
    ("could not be rewritten", REWRITER_ERROR),  # an enclosing function's failure
)


class Refusal(ValueError):
    """Compile-time capture refused one function; the message says why in one line."""


def classify(reason: str) -> str | None:
    """The skip class of ``reason`` (one of :data:`CLASSES`), or None when it is not a skip."""
    for phrase, kind in _PHRASES:
        if phrase in reason:
            return kind
    return None


class Skips:
    """What compile-time capture skipped in this process (one instance: :data:`ledger`)."""

    def __init__(self) -> None:
        self._lock = _forksafe.lock()
        self._said: set[tuple[str, str, bool]] = set()  # (function, class, named) already said
        self._counted: set[str] = set()  # functions counted in a summary line (or pending)
        self._noted = 0  # how many functions were counted so far: see mark()
        self._pending: dict[str, tuple[int, str]] = {}  # function -> (its number, class), unsaid

    def note(self, function: str, reason: str, *, named: bool = False, spanned: bool = False) -> bool:
        """Record that ``function`` (``module.qualname``) was skipped for ``reason``.

        Returns False when ``reason`` is not a skip (:func:`classify`): the caller reports it.
        ``named``: a pattern names this function exactly, so it is said as a WARNING (once).
        ``spanned``: it still gets a runtime span, so the warning says that, not "uninstrumented".
        """
        kind = classify(reason)
        if kind is None:
            return False
        with self._lock:
            if (function, kind, named) in self._said:
                return True
            self._said.add((function, kind, named))
            if function not in self._counted:
                self._counted.add(function)
                self._pending[function] = (self._noted, kind)
                self._noted += 1
        if named and spanned:
            _log.warning("otel-scope: %s gets a runtime span only, no locals: %s", function, reason)
        elif named:
            _log.warning("otel-scope: %s left uninstrumented: %s", function, reason)
        else:
            _log.debug("otel-scope: compile-time capture skips %s (%s): %s", function, kind, reason)
        return True

    def note_module(self, module: str, skipped: Mapping[str, str]) -> None:
        """Note what one rewrite of ``module`` skipped (``{qualname: reason}``); a reason that is
        not a skip is a WARNING, as it always was."""
        for qualname, reason in skipped.items():
            if not self.note(f"{module}.{qualname}", reason):
                _log.warning("otel-scope: %s.%s left uninstrumented: %s", module, qualname, reason)

    def mark(self) -> int:
        """A point in time for :meth:`summary`'s ``since``."""
        with self._lock:
            return self._noted

    def summary(self, since: int = 0) -> str | None:
        """One line for the functions skipped since the last summary and since ``since`` (a
        :meth:`mark`): those are said, the others stay for a later one. None if there were none."""
        with self._lock:
            said = {f: kind for f, (n, kind) in self._pending.items() if n >= since}
            for function in said:
                del self._pending[function]
        counts = Counter(said.values())
        total = sum(counts.values())
        if not total:
            return None
        order = sorted(counts, key=lambda kind: (-counts[kind], CLASSES.index(kind)))
        parts = ", ".join(f"{counts[kind]} {kind}" for kind in order)
        noun = "function" if total == 1 else "functions"
        return (
            f"skipped {total} {noun}: {parts} (no compile-time capture for them; each is named at "
            "debug level, logger otel_scope)"
        )


ledger = Skips()
note = ledger.note
note_module = ledger.note_module
summary = ledger.summary
mark = ledger.mark
