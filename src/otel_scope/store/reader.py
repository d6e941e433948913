"""Reading one stored trace piece by piece, so a million-span trace costs what one screen costs.

``SpanStore.get_trace`` loads a whole trace, which is what the small-trace API wants and what made
``history`` take minutes and gigabytes on real programs' traces. :class:`TraceReader` instead
answers the questions the timeline asks (the roots, a call's children in start order, the spans
whose parent is missing, per-function totals) with indexed queries whose rows are read lazily.
It has its own read-only connection: its cursors stay open while the caller renders, which must
neither hold the store's write lock nor block the processes exporting into the file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from otel_scope import semconv
from otel_scope.store.spanstore import BUSY_TIMEOUT_MS, FUNCTION_EXPR, SPAN_COLUMNS, record_from_row
from otel_scope.timeline.model import FunctionStats, SpanRecord, TraceStats

# A missing parent: the parent is not in this trace (another process, a dropped span).
_ORPHAN = (
    "parent_span_id IS NOT NULL AND parent_span_id != '' AND NOT EXISTS "
    "(SELECT 1 FROM spans p WHERE p.trace_id = s.trace_id AND p.span_id = s.parent_span_id)"
)


def _json_path(key: str) -> str:
    return "'$.\"" + key + "\"'"


class TraceReader:
    """Lazy, indexed reads of one trace in a store file (``trace_id`` is the full ID)."""

    def __init__(self, path: str | os.PathLike[str], trace_id: str) -> None:
        self.path = os.fspath(path)
        self.trace_id = trace_id
        # What a backend said about the trace (a partial answer), shown in the header.
        self.warnings: list[str] = []
        uri = "file:" + os.path.abspath(self.path).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spans(
        self, where: str, params: tuple[Any, ...] = (), order: str = "start_ns, end_ns"
    ) -> Iterator[SpanRecord]:
        cursor = self._conn.execute(
            f"SELECT {SPAN_COLUMNS} FROM spans s WHERE trace_id = ? AND {where} ORDER BY {order}",
            (self.trace_id, *params),
        )
        for row in cursor:
            yield record_from_row(self.trace_id, row)

    # -- the tree --------------------------------------------------------------------------------
    def roots(self) -> Iterator[SpanRecord]:
        """Spans with no parent at all, in start order (normally the one session span)."""
        return self._spans("(parent_span_id IS NULL OR parent_span_id = '')")

    def orphans(self) -> Iterator[SpanRecord]:
        """Spans whose parent is not in the trace, in start order: data is missing above them."""
        return self._spans(_ORPHAN)

    def children(self, span_id: str) -> Iterator[SpanRecord]:
        """The spans whose parent is ``span_id``, in start order (through the parent index)."""
        return self._spans("parent_span_id = ?", (span_id,))

    def spans(self, function: Callable[[str], bool] | None = None) -> Iterator[SpanRecord]:
        """Every span in start order; with ``function``, only those whose function it accepts
        (decided inside SQLite on the function name alone, so others are never decoded)."""
        if function is None:
            return self._spans("1")
        self._conn.create_function("otel_scope_function", 1, lambda name: bool(function(name or "")))
        return self._spans(f"otel_scope_function({FUNCTION_EXPR})")

    def mentioning(self, words: frozenset[str]) -> Iterator[SpanRecord]:
        """Spans whose attributes or events contain one of ``words`` (a superset, for ``--where``)."""
        if not words:
            return iter(())
        tests = " OR ".join("instr(attributes, ?) OR instr(events, ?)" for _ in words)
        params = tuple(w for word in sorted(words) for w in (word, word))
        return self._spans(f"({tests})", params)

    def parent_and_function(self, span_id: str) -> tuple[str | None, str] | None:
        """A span's parent ID and function name (for call paths), or ``None`` if not stored."""
        row = self._conn.execute(
            f"SELECT parent_span_id, {FUNCTION_EXPR} FROM spans WHERE trace_id = ? AND span_id = ?",
            (self.trace_id, span_id),
        ).fetchone()
        return (row[0] or None, row[1]) if row else None

    def resources(self) -> list[str]:
        """The distinct resources (as stored JSON), in order of first appearance."""
        rows = self._conn.execute(
            "SELECT resource, min(start_ns) FROM spans WHERE trace_id = ? GROUP BY resource ORDER BY 2",
            (self.trace_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def spans_of_resource(self, resource: str) -> Iterator[SpanRecord]:
        return self._spans("resource = ?", (resource,))

    # -- aggregates ------------------------------------------------------------------------------
    def stats(self) -> TraceStats:
        """The header's numbers in one pass over the trace's rows."""
        mechanism = f"json_extract(attributes, {_json_path(semconv.MECHANISM)})"
        row = self._conn.execute(
            "SELECT count(*), min(start_ns), max(end_ns), total(status_code = 'ERROR'), "
            f"total({mechanism} = ?), total({mechanism} = ?), "
            f"total(max(0, coalesce(CAST(json_extract(attributes, {_json_path(semconv.CAPTURES_DROPPED)}) "
            "AS INTEGER), 0))), total(dropped_events) FROM spans WHERE trace_id = ?",
            (semconv.MECHANISM_RUNTIME, semconv.MECHANISM_COMPILE_TIME, self.trace_id),
        ).fetchone()
        count = row[0] or 0
        runtime, compile_time = int(row[4]), int(row[5])
        services = [
            r[0]
            for r in self._conn.execute(
                "SELECT DISTINCT service_name FROM spans WHERE trace_id = ? AND service_name != '' "
                "ORDER BY service_name",
                (self.trace_id,),
            )
        ]
        reason = f"json_extract(attributes, {_json_path(semconv.CAPTURES_DROPPED_REASON)})"
        reasons = sorted(
            str(r[0])
            for r in self._conn.execute(
                f"SELECT DISTINCT {reason} FROM spans WHERE trace_id = ? AND {reason} IS NOT NULL",
                (self.trace_id,),
            )
        )
        session = self._conn.execute(
            f"SELECT json_extract(attributes, {_json_path(semconv.SESSION_NAME)}) FROM spans "
            f"WHERE trace_id = ? AND json_extract(attributes, {_json_path(semconv.SESSION_NAME)}) "
            "IS NOT NULL ORDER BY start_ns LIMIT 1",
            (self.trace_id,),
        ).fetchone()
        return TraceStats(
            trace_id=self.trace_id,
            span_count=count,
            start_ns=row[1] or 0,
            end_ns=row[2] or 0,
            errors=int(row[3]),
            by_mechanism={
                semconv.MECHANISM_RUNTIME: runtime,
                semconv.MECHANISM_COMPILE_TIME: compile_time,
                "otel": count - runtime - compile_time,
            },
            services=services,
            session_name=str(session[0]) if session else None,
            dropped_captures=int(row[6]),
            dropped_reasons=reasons,
            sdk_dropped_events=int(row[7]),
        )

    def function_stats(self) -> list[FunctionStats]:
        """Calls, total time, self time (minus direct children) and errors per function, the
        most total time first. Self time reads each call's children through the parent index."""
        rows = self._conn.execute(
            f"SELECT {FUNCTION_EXPR} AS function, count(*), total(end_ns - start_ns), "
            "total(end_ns - start_ns - coalesce((SELECT total(c.end_ns - c.start_ns) FROM spans c "
            "WHERE c.trace_id = s.trace_id AND c.parent_span_id = s.span_id), 0)), "
            "total(status_code = 'ERROR') FROM spans s WHERE trace_id = ? GROUP BY function "
            "ORDER BY 3 DESC",
            (self.trace_id,),
        ).fetchall()
        return [FunctionStats(r[0], r[1], int(r[2]), max(0, int(r[3])), int(r[4])) for r in rows]

    def slowest(self, limit: int) -> list[SpanRecord]:
        """The ``limit`` longest spans, longest first (the session root included)."""
        return list(self._spans("1", order=f"end_ns - start_ns DESC LIMIT {max(0, int(limit))}"))

    def exceptions(self, limit: int) -> tuple[int, list[SpanRecord]]:
        """How many spans failed, and the first ``limit`` of them in start order."""
        total = self._conn.execute(
            "SELECT count(*) FROM spans WHERE trace_id = ? AND status_code = 'ERROR'", (self.trace_id,)
        ).fetchone()[0]
        return total, list(self._spans("status_code = 'ERROR'", order=f"start_ns LIMIT {max(0, int(limit))}"))
