"""Reading one stored trace piece by piece, so a million-span trace costs what one screen costs.

``SpanStore.get_trace`` loads a whole trace, which is what the small-trace API wants and what made
``history`` take minutes and gigabytes on real programs' traces. :class:`TraceReader` instead
answers the questions the timeline asks (the roots, a call's children in start order, the spans
whose parent is missing, per-function totals) with indexed queries whose rows are read lazily.
It has its own read-only connection: its cursors stay open while the caller renders, which must
neither hold the store's write lock nor block the processes exporting into the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from otel_scope import semconv
from otel_scope.store.records import FunctionStats, SpanRecord, TraceStats, as_count
from otel_scope.store.spanstore import (
    COMPILE_TIME,
    DROPPED_EXPR,
    MESSAGES,
    NOTABLE,
    RUNTIME,
    SPAN_COLUMNS,
    connect_read_only,
    record_from_row,
)
from otel_scope.timeline.query import Where, prefilter_sql

# The parents that are not in the trace: each distinct parent ID looked up once, so finding the
# orphans of a million spans costs one pass over the parent index and a probe per parent.
_MISSING_PARENTS = (
    "SELECT parent FROM (SELECT DISTINCT parent_span_id AS parent FROM spans INDEXED BY spans_trace_parent "
    "WHERE trace_id = :trace AND parent_span_id IS NOT NULL) "
    "WHERE NOT EXISTS (SELECT 1 FROM spans p WHERE p.trace_id = :trace AND p.span_id = parent)"
)


class SpanHead:
    """What folding needs of a span, before (or instead of) decoding it: the plain columns, its
    function and whether otel-scope made it, read by SQLite from the stored JSON. Most calls of a
    big trace are folded into one line, so their attributes and events are never read."""

    __slots__ = ("_load", "_record", "end_ns", "function", "instrumented", "parent_span_id", "span_id",
                 "start_ns", "status_code")  # fmt: skip
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int
    status_code: str

    def __init__(
        self, row: Sequence[Any], load: Callable[[str], SpanRecord | None] | None,
        record: SpanRecord | None = None,
    ) -> None:  # fmt: skip
        (self.span_id, self.parent_span_id, self.start_ns, self.end_ns, self.status_code, self.function,
         self.instrumented) = row  # fmt: skip
        self._load, self._record = load, record

    @classmethod
    def of(cls, span: SpanRecord) -> SpanHead:
        """The head of a span already decoded."""
        function = str(span.attributes.get(semconv.CODE_FUNCTION_NAME) or span.name)
        row = (span.span_id, span.parent_span_id, span.start_ns, span.end_ns, span.status_code, function,
               semconv.MECHANISM in span.attributes)  # fmt: skip
        return cls(row, None, span)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def record(self) -> SpanRecord:
        """The whole span, read from the store the first time it is asked for."""
        if self._record is None:
            assert self._load is not None
            record = self._load(self.span_id)
            if record is None:  # pruned meanwhile: what the head knows
                record = SpanRecord("", self.span_id, self.parent_span_id, self.function,
                                    start_ns=self.start_ns, end_ns=self.end_ns,
                                    status_code=self.status_code)  # fmt: skip
            self._record = record
        return self._record


# A head's columns: the function (code.function.name, else the name) and the mechanism's presence.
_HEAD_COLUMNS = (
    "span_id, parent_span_id, start_ns, end_ns, status_code, "
    f"coalesce(nullif(json_extract(attributes, '$.\"{semconv.CODE_FUNCTION_NAME}\"'), ''), name), "
    f"json_type(attributes, '$.\"{semconv.MECHANISM}\"') IS NOT NULL"
)


_HAS_CHILDREN = (
    "EXISTS (SELECT 1 FROM spans c INDEXED BY spans_trace_parent "
    "WHERE c.trace_id = spans.trace_id AND c.parent_span_id = spans.span_id)"
)
_LEAVES_CAP = 10_000  # the noted leaves: a walk consumes them at once, so this is rarely reached


def _json_path(key: str) -> str:
    return "'$.\"" + key + "\"'"


class TraceReader:
    """Lazy, indexed reads of one trace in a store file (``trace_id`` is the full ID)."""

    def __init__(self, path: str | os.PathLike[str], trace_id: str) -> None:
        self.path = os.fspath(path)
        self.trace_id = trace_id
        # What a backend said about the trace (a partial answer), shown in the header.
        self.warnings: list[str] = []
        self._missing_parents: list[str] | None = None
        # The store's own read-only opening: it also reads a store in a folder this user cannot
        # write (where SQLite cannot make the WAL's shared-memory file), as the other readers do.
        self._conn = connect_read_only(self.path)
        self._indexes: set[str] | None = None
        # Spans just read that have no children (see _spans), until the walk reaches them.
        self._leaves: set[str] = set()

    def _has_index(self, name: str) -> bool:
        """Whether the store has index ``name`` (a store written by an older otel-scope may not)."""
        if self._indexes is None:
            rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
            self._indexes = {r[0] for r in rows}
        return name in self._indexes

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spans(
        self,
        where: str,
        params: tuple[Any, ...] = (),
        order: str = "start_ns, end_ns",
        index: str = "",
        leaves: bool = False,
        named: Mapping[str, object] | None = None,
    ) -> Iterator[SpanRecord]:
        """Decoded spans of the trace; ``:trace`` in ``where`` is the trace ID, ``params`` are
        ``:p2``, ``:p3``... (named: Python 3.14 refuses numbered placeholders with a sequence),
        ``named`` any other parameters by name.

        With ``leaves``, spans without children are noted (one seek of the parent index each,
        inside SQLite), so the walk asks no query for the children of a leaf: in a big trace most
        calls are leaves, and a query from Python costs more than the rest of the span."""
        indexed = f" INDEXED BY {index}" if index else ""
        columns = f"{SPAN_COLUMNS}, {_HAS_CHILDREN}" if leaves else SPAN_COLUMNS
        bound = {"trace": self.trace_id, **{f"p{n}": value for n, value in enumerate(params, 2)}}
        cursor = self._conn.execute(
            f"SELECT {columns} FROM spans{indexed} WHERE trace_id = :trace AND {where} ORDER BY {order}",
            {**bound, **(named or {})},
        )
        trace_id, noted = self.trace_id, self._leaves
        for row in cursor:
            if leaves and not row[13]:
                if len(noted) >= _LEAVES_CAP:
                    noted.clear()
                noted.add(row[0])
            yield record_from_row(trace_id, row)

    # -- the tree --------------------------------------------------------------------------------
    def roots(self) -> Iterator[SpanRecord]:
        """Spans with no parent at all, in start order (normally the one session span)."""
        return self._spans("parent_span_id IS NULL", index="spans_trace_parent")

    def orphans(self) -> Iterator[SpanRecord]:
        """Spans whose parent is not in the trace, in start order: data is missing above them.

        After :meth:`function_stats` (the summary) the missing parents are already known.
        """
        if self._missing_parents is None:
            return self._spans(f"parent_span_id IN ({_MISSING_PARENTS})")
        if not self._missing_parents:
            return iter(())
        self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS missing_parents (span_id TEXT PRIMARY KEY)")
        self._conn.execute("DELETE FROM missing_parents")
        self._conn.executemany(
            "INSERT OR IGNORE INTO missing_parents VALUES (?)", [(p,) for p in self._missing_parents]
        )
        return self._spans("parent_span_id IN (SELECT span_id FROM missing_parents)")

    def child_heads(self, span_id: str) -> Iterator[SpanHead]:
        """:meth:`children` as :class:`SpanHead`, decoded only when asked (for folding)."""
        cursor = self._conn.execute(
            f"SELECT {_HEAD_COLUMNS} FROM spans INDEXED BY spans_trace_parent "
            "WHERE trace_id = :trace AND parent_span_id = :parent ORDER BY start_ns, end_ns",
            {"trace": self.trace_id, "parent": span_id},
        )
        load = self.span
        for row in cursor:
            yield SpanHead((row[0], row[1], row[2], row[3], row[4], str(row[5]), bool(row[6])), load)

    def children(self, span_id: str) -> Iterator[SpanRecord]:
        """The spans whose parent is ``span_id``, in start order (through the parent index)."""
        if span_id in self._leaves:  # read as a child or a folded call's head: known to have none
            self._leaves.discard(span_id)
            return iter(())
        return self._spans("parent_span_id = :p2", (span_id,), index="spans_trace_parent", leaves=True)

    def _distinct(self, column: str, index: str, skip_empty: bool) -> list[str]:
        """The distinct values of ``column``, by seeking ``index`` (on ``(trace_id, column, ...)``)
        from one value to the next: a few seeks per value, not a pass over a million entries."""
        lowest = f"SELECT min({column}) FROM spans INDEXED BY {index} WHERE trace_id = :trace"
        first = f"{lowest} AND {column} > ''" if skip_empty else lowest
        return [
            r[0]
            for r in self._conn.execute(
                f"WITH RECURSIVE s(v) AS (SELECT ({first}) UNION ALL SELECT ({lowest} AND {column} > s.v) "
                "FROM s WHERE s.v IS NOT NULL) SELECT v FROM s WHERE v IS NOT NULL",
                {"trace": self.trace_id},
            )
        ]

    def names(self) -> list[str]:
        """The distinct span names of the trace, from the name index."""
        return self._distinct("name", "spans_trace_name", skip_empty=False)

    def _named(self, function: Callable[[str], bool]) -> tuple[str, dict[str, object]]:
        """The SQL condition (and its parameters) selecting the spans whose name ``function``
        accepts: the test runs once per distinct name, and the spans are found by name."""
        accepted = [name for name in self.names() if function(name)]
        return "name IN (SELECT value FROM json_each(:names))", {"names": json.dumps(accepted)}

    def spans(self, function: Callable[[str], bool] | None = None) -> Iterator[SpanRecord]:
        """Every span in start order; with ``function``, only those whose name it accepts
        (decided on the name index, so other spans are never read)."""
        if function is None:
            return self._spans("1")
        condition, named = self._named(function)
        return self._spans(condition, named=named)

    def heads(self, function: Callable[[str], bool]) -> Iterator[SpanHead]:
        """:meth:`spans` of the names ``function`` accepts as :class:`SpanHead`, decoded only when
        asked (for folding)."""
        condition, named = self._named(function)
        cursor = self._conn.execute(
            f"SELECT {_HEAD_COLUMNS} FROM spans WHERE trace_id = :trace AND {condition} "
            "ORDER BY start_ns, end_ns",
            {"trace": self.trace_id, **named},
        )
        load = self.span
        for row in cursor:
            yield SpanHead((row[0], row[1], row[2], row[3], row[4], str(row[5]), bool(row[6])), load)

    def span(self, span_id: str) -> SpanRecord | None:
        """One span by its full ID (through the primary key), or ``None`` if not stored."""
        return next(self._spans("span_id = :p2", (span_id,), leaves=True), None)

    def with_prefix(self, prefix: str, limit: int) -> tuple[int, list[SpanRecord]]:
        """How many span IDs start with ``prefix`` (lower-case hex), and the first ``limit`` of
        those spans: a range of the primary key, not a scan."""
        bounds = {"trace": self.trace_id, "lo": prefix, "hi": prefix + "~"}  # "~" sorts after hex digits
        (count,) = self._conn.execute(
            "SELECT count(*) FROM spans WHERE trace_id = :trace AND span_id >= :lo AND span_id < :hi", bounds
        ).fetchone()
        found = self._spans(
            "span_id >= :p2 AND span_id < :p3", (prefix, prefix + "~"), order=f"span_id LIMIT {limit}"
        )
        return count, list(found)

    def with_messages_mentioning(self, text: str) -> Iterator[SpanRecord]:
        """Spans with a message event or a link whose stored events or links contain ``text``
        (a superset, for ``--follow``): the partial index of such spans, where the store has it."""
        index = "spans_trace_messages" if self._has_index("spans_trace_messages") else ""
        return self._spans(f"{MESSAGES} AND (instr(events, :p2) OR instr(links, :p2))", (text,), index=index)

    def matching(self, where: Where) -> Iterator[SpanRecord]:
        """Spans that pass ``where``'s SQL prefilter (:func:`~otel_scope.timeline.query.prefilter_sql`),
        in start order: a superset, for ``--where``; every span when the condition cannot be
        narrowed (``not x < 0`` holds for the spans that never captured ``x``)."""
        narrowed, params = prefilter_sql(where)
        return self._spans(narrowed or "1", named=params)

    def parent_and_function(self, span_id: str) -> tuple[str | None, str] | None:
        """A span's parent ID and name (for call paths), or ``None`` if not stored."""
        row = self._conn.execute(
            "SELECT parent_span_id, name FROM spans WHERE trace_id = ? AND span_id = ?",
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
        return self._spans("resource = :p2", (resource,))

    def start_ns(self) -> int:
        """When the trace started (from its summary row)."""
        row = self._conn.execute(
            "SELECT start_ns FROM traces WHERE trace_id = ?", (self.trace_id,)
        ).fetchone()
        return int(row[0]) if row else 0

    # -- aggregates ------------------------------------------------------------------------------
    def stats(self) -> TraceStats:
        """The header's numbers, from indexes: the function index for counts and times, the
        service index, and the partial index of notable spans for what was dropped."""
        # The trace's summary row is kept in step with its spans by every write.
        row = self._conn.execute(
            "SELECT span_count, start_ns, end_ns, error_count, session_name FROM traces WHERE trace_id = ?",
            (self.trace_id,),
        ).fetchone() or (0, 0, 0, 0, None)
        count = row[0]
        runtime, compile_time = (
            self._conn.execute(
                f"SELECT count(*) FROM spans WHERE trace_id = ? AND {which}", (self.trace_id,)
            ).fetchone()[0]
            for which in (RUNTIME, COMPILE_TIME)
        )
        services = self._distinct("service_name", "spans_trace_service", skip_empty=True)
        reason = f"json_extract(attributes, {_json_path(semconv.CAPTURES_DROPPED_REASON)})"
        dropped, sdk_dropped, reasons = self._conn.execute(
            f"SELECT total(max(0, coalesce(CAST({DROPPED_EXPR} AS INTEGER), 0))), total(dropped_events), "
            f"group_concat(DISTINCT {reason}) FROM spans WHERE trace_id = ? AND {NOTABLE}",
            (self.trace_id,),
        ).fetchone()
        lost, lost_where = 0, []
        sampled_out, sampled_calls = 0, 0
        by_function: dict[str, int] = {}
        # The session span's counts, and forked children's own (their ``otel_scope.process`` spans).
        accounts = (semconv.SESSION_SPAN_NAME, semconv.PROCESS_SPAN_NAME)
        for session in self._spans("name IN (:p2, :p3)", accounts, index="spans_trace_name"):
            a = session.attributes
            lost += as_count(a.get(semconv.SESSION_DROPPED_SPANS))
            lost_where += [str(r) for r in a.get(semconv.SESSION_DROPPED_REASONS) or ()]
            sampled_out += as_count(a.get(semconv.SAMPLING_SAMPLED_OUT))
            sampled_calls += as_count(a.get(semconv.SAMPLING_CALLS))
            top = a.get(semconv.SAMPLING_TOP)
            for item in top if isinstance(top, list) else ():
                function, _, left_out = str(item).rpartition("=")
                if function:
                    by_function[function] = by_function.get(function, 0) + as_count(left_out)
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
            session_name=row[4],
            dropped_captures=int(dropped),
            dropped_reasons=sorted(set(reasons.split(","))) if reasons else [],
            sdk_dropped_events=int(sdk_dropped),
            dropped_spans=lost,
            dropped_span_reasons=lost_where,
            sampled_out=sampled_out,
            sampled_calls=sampled_calls,
            sampled_out_by_function=by_function,
        )

    def function_stats(self) -> list[FunctionStats]:
        """Calls, total time, self time (minus direct children) and errors per function, the
        most total time first.

        Two passes over covering indexes: per-name totals from the name index, and children's
        time per parent from the parent index (grouped, so each parent is looked up once, not
        each span). The parents that turn out to be missing are kept for :meth:`orphans`.
        """
        totals = self._conn.execute(
            "SELECT name, count(*), total(end_ns - start_ns), total(status_code = 'ERROR') "
            "FROM spans INDEXED BY spans_trace_name WHERE trace_id = ? GROUP BY name",
            (self.trace_id,),
        ).fetchall()
        # Grouped by the parent's name inside SQLite: a few rows, not one per parent. The
        # parents not in the trace come back as one row (name NULL) listing their IDs.
        children: dict[str, float] = {}
        missing: list[str] = []
        for name, took, absent in self._conn.execute(
            "SELECT p.name, total(k.took), group_concat(CASE WHEN p.name IS NULL THEN k.parent END) "
            "FROM (SELECT parent_span_id AS parent, total(end_ns - start_ns) AS took FROM spans "
            "INDEXED BY spans_trace_parent WHERE trace_id = :trace AND parent_span_id IS NOT NULL "
            "GROUP BY parent_span_id) k LEFT JOIN spans p ON p.trace_id = :trace AND p.span_id = k.parent "
            "GROUP BY p.name",
            {"trace": self.trace_id},
        ):
            if name is None:
                missing = absent.split(",") if absent else []
            else:
                children[name] = took
        self._missing_parents = missing
        stats = [
            FunctionStats(name, calls, int(total), max(0, int(total - children.get(name, 0.0))), int(errors))
            for name, calls, total, errors in totals
        ]
        return sorted(stats, key=lambda f: -f.total_ns)

    def slowest(self, limit: int) -> list[SpanRecord]:
        """The ``limit`` longest spans, longest first (the session root included)."""
        ids = self._conn.execute(
            "SELECT span_id FROM spans INDEXED BY spans_trace_name WHERE trace_id = ? "
            "ORDER BY end_ns - start_ns DESC LIMIT ?",
            (self.trace_id, max(0, limit)),
        ).fetchall()
        return [span for (span_id,) in ids for span in self._spans("span_id = :p2", (span_id,))]

    def exceptions(self, limit: int) -> tuple[int, list[SpanRecord]]:
        """How many spans failed, and the first ``limit`` of them in start order."""
        failed = f"{NOTABLE} AND status_code = 'ERROR'"
        total = self._conn.execute(
            f"SELECT count(*) FROM spans WHERE trace_id = ? AND {failed}", (self.trace_id,)
        ).fetchone()[0]
        return total, list(self._spans(failed, order=f"start_ns LIMIT {max(0, int(limit))}"))
