"""The one exception family every trace source raises, so callers handle all sources alike."""

from __future__ import annotations


class SourceError(Exception):
    """A trace source cannot answer: unreachable backend, unreadable file, unusable store.

    The message is one line that names the URL, file or ID involved and what to check.
    """


class TraceNotFound(SourceError):
    """The source works but holds no trace with the requested ID."""
