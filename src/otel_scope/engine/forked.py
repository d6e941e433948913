"""Which targets a forked child matched, so its parent does not call them unmatched at exit.

A pre-fork server's master (gunicorn, uWSGI without lazy-apps off) never imports the app: each
worker does, after its fork. The master's exit line "``app:*`` selected nothing: module app was
never imported" would then be false. Patterns the process knows before its first fork get a
byte in an anonymous shared mapping, which every forked descendant shares; a child sets its
pattern's byte when the pattern selects a function, and the parent reads it at exit.

Patterns added after the first fork get no byte (a child and its parent could hand the same
byte to different patterns); their exit line says as much as the process knows itself.
"""

from __future__ import annotations

import mmap
import os
import weakref

_SIZE = 4096  # patterns with a byte, at most


class ForkedMatches:
    """One process tree's shared record of matched patterns (see the module doc)."""

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        self._shared: mmap.mmap | None = None
        self._frozen = False  # a fork happened: no new slots
        self.children = 0  # processes this one forked
        _every.add(self)

    def _forked(self) -> None:
        self._frozen = True
        self.children += 1

    def _in_child(self) -> None:
        self._frozen = True
        self.children = 0

    def know(self, text: str) -> None:
        """Give pattern ``text`` a byte, if no fork happened yet."""
        if self._frozen or text in self._slots or len(self._slots) >= _SIZE:
            return
        if self._shared is None:
            try:
                self._shared = mmap.mmap(-1, _SIZE)  # anonymous and shared with forked children
            except (OSError, ValueError):
                self._frozen = True
                return
        self._slots[text] = len(self._slots)

    def matched(self, text: str) -> None:
        """Pattern ``text`` selected a function in this process."""
        slot = self._slots.get(text)
        if slot is not None and self._shared is not None:
            self._shared[slot] = 1

    def matched_in_family(self, text: str) -> bool:
        """Whether this process or one it forked (or their forks) had ``text`` select something."""
        slot = self._slots.get(text)
        return slot is not None and self._shared is not None and self._shared[slot] == 1


_every: weakref.WeakSet[ForkedMatches] = weakref.WeakSet()  # one per engine; hooks hold none


def _after_fork_in_parent() -> None:
    for matches in list(_every):
        matches._forked()


def _after_fork_in_child() -> None:
    for matches in list(_every):
        matches._in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
