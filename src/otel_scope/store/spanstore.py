"""The embedded span store: one SQLite file that every traced process on the machine writes into.

With no collector running, the local store is where traces go, and ``otel-scope history`` and
``otel-scope sessions`` read them back. Several processes (a web server's workers, a test run
and the app it starts) export at the same time, so the file runs in WAL mode with a busy timeout,
and every write is one short ``BEGIN IMMEDIATE`` transaction: writers queue instead of failing,
and readers never block writers.

Two tables: ``spans`` holds every span with its attributes, events, links and resource as JSON;
``traces`` holds one summary row per trace, kept up to date in the same transaction as the span
insert. The summary makes ``sessions()`` and ``prune()`` cost one small indexed query instead of a
scan of every span, which matters because the exporter prunes from inside traced processes.

The store holds argument values and locals, so it is private: a writer creates the file ``0600``
(SQLite gives its ``-wal`` and ``-shm`` files the same mode) and any missing folders ``0700``.
Readers (``history``, ``sessions``, ``export``) open it with ``read_only=True``: SQLite's
``mode=ro``, which never creates, migrates or modifies the file, so they also work on a file they
may not write and on a full disk; where even that cannot open a WAL file (no ``-shm`` and a
folder they may not write), they fall back to ``immutable=1``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import types
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from otel_scope import _forksafe, semconv
from otel_scope._sdk import attributes_mapping

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    # Imported by the functions that read records: a program's exporter only writes rows, and
    # the records' dataclasses cost about 2 ms of every exit that stores a span (the sessions'
    # summary alone, 0.5 ms).
    from otel_scope.store.records import SessionSummary, SpanRecord, TraceData

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 15_000
# Size pruning removes traces until the store is this fraction of its limit, so a store at its
# limit is not pruned again (and rewritten) on every export.
_PRUNE_TARGET = 0.9
_PRUNE_ROUNDS = 8
_HEX = re.compile(r"^[0-9a-f]{1,32}$")

# SQL the read indexes are built on; queries must spell it exactly so to use them.
MECHANISM_EXPR = "json_extract(attributes, '$.\"otel_scope.mechanism\"')"
DROPPED_EXPR = "json_extract(attributes, '$.\"otel_scope.captures.dropped\"')"
# The few spans the header must look at one by one: failed, or with something dropped.
NOTABLE = f"(status_code = 'ERROR' OR dropped_events > 0 OR {DROPPED_EXPR} IS NOT NULL)"
RUNTIME = f"{MECHANISM_EXPR} = 'runtime'"
# The spans `history --follow` searches: those with a message event or a span link.
MESSAGES = f"(instr(events, '\"{semconv.MESSAGE_ID}\"') OR links != '[]')"
COMPILE_TIME = f"{MECHANISM_EXPR} = 'compile_time'"

# What `otel-scope history` reads, so a million-span trace answers from indexes, not row scans.
# SQLite before 3.41 never reads an indexed expression back from the index, so the covering
# indexes use plain columns only: the span name is the function (otel-scope names its spans by
# code.function.name), and mechanism counts come from partial indexes of trace IDs alone.
_READ_INDEXES = f"""
CREATE INDEX IF NOT EXISTS spans_trace_parent ON spans (trace_id, parent_span_id, start_ns, end_ns);
CREATE INDEX IF NOT EXISTS spans_trace_name ON spans (trace_id, name, status_code, start_ns, end_ns, span_id);
CREATE INDEX IF NOT EXISTS spans_trace_service ON spans (trace_id, service_name);
CREATE INDEX IF NOT EXISTS spans_trace_runtime ON spans (trace_id) WHERE {RUNTIME};
CREATE INDEX IF NOT EXISTS spans_trace_compile_time ON spans (trace_id) WHERE {COMPILE_TIME};
CREATE INDEX IF NOT EXISTS spans_trace_notable ON spans (trace_id, start_ns) WHERE {NOTABLE};
CREATE INDEX IF NOT EXISTS spans_trace_messages ON spans (trace_id, start_ns) WHERE {MESSAGES};
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status_code TEXT NOT NULL,
    status_message TEXT NOT NULL,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    links TEXT NOT NULL,
    resource TEXT NOT NULL,
    service_name TEXT NOT NULL,
    dropped_events INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_trace_start ON spans (trace_id, start_ns);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL,
    error_count INTEGER NOT NULL,
    root_name TEXT,
    root_start_ns INTEGER,
    session_name TEXT,
    service_name TEXT,
    has_runtime INTEGER NOT NULL,
    has_compile_time INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_updated ON traces (updated_ns);
"""

_UPSERT_TRACE = """
INSERT INTO traces (trace_id, start_ns, end_ns, updated_ns, span_count, error_count, root_name,
                    root_start_ns, session_name, service_name, has_runtime, has_compile_time, bytes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    start_ns = min(start_ns, excluded.start_ns),
    end_ns = max(end_ns, excluded.end_ns),
    updated_ns = max(updated_ns, excluded.updated_ns),
    span_count = span_count + excluded.span_count,
    error_count = error_count + excluded.error_count,
    root_name = CASE WHEN excluded.root_start_ns IS NOT NULL
                      AND (root_start_ns IS NULL OR excluded.root_start_ns < root_start_ns)
                     THEN excluded.root_name ELSE root_name END,
    root_start_ns = CASE WHEN excluded.root_start_ns IS NOT NULL
                          AND (root_start_ns IS NULL OR excluded.root_start_ns < root_start_ns)
                         THEN excluded.root_start_ns ELSE root_start_ns END,
    session_name = coalesce(session_name, excluded.session_name),
    service_name = coalesce(service_name, excluded.service_name),
    has_runtime = max(has_runtime, excluded.has_runtime),
    has_compile_time = max(has_compile_time, excluded.has_compile_time),
    bytes = bytes + excluded.bytes
"""

_INSERT_SPAN = "INSERT OR IGNORE INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SPAN_COLUMNS = 15
# Many rows per INSERT statement: one sqlite3_step, so one release of the GIL, per chunk instead
# of per span. With busy threads in the traced program each re-acquisition of the GIL can cost a
# whole switch interval (5 ms), which made the store write a few hundred spans a second.
_ROWS_PER_INSERT = 2000  # 30,000 parameters: under SQLITE_MAX_VARIABLE_NUMBER (32,766 since 3.32)
_ROW_PLACEHOLDERS = "(" + ", ".join("?" * _SPAN_COLUMNS) + ")"


class _AlreadyStored(Exception):
    """Some spans of a batch were stored before (a re-export, a file imported twice)."""


class StoreError(Exception):
    """The store file cannot be used (corrupt, written by a newer otel-scope, or an ambiguous ID)."""


_COPYABLE = (dict, types.MappingProxyType)  # their copy() is a C-level dict copy


def _plain(attributes: Any) -> dict[str, Any]:
    # SDK attribute values are scalars or tuples; JSON (and every other source) gives lists.
    if not attributes:
        return {}
    mapping = attributes_mapping(attributes)
    if tuple not in map(type, mapping.values()):  # the common case: scalars only
        return mapping.copy() if isinstance(mapping, _COPYABLE) else dict(mapping)
    return {k: list(v) if type(v) is tuple else v for k, v in mapping.items()}


# The last resource converted: every span of a process shares one Resource object, so the
# exporter converts and encodes it once per process instead of once per span.
_last_resource: tuple[Any, tuple[dict[str, Any], str, str]] = (None, ({}, "{}", ""))


def _resource(resource: Any) -> tuple[dict[str, Any], str, str]:
    """``resource``'s attributes as a plain dict, as JSON, and its service name."""
    global _last_resource
    last = _last_resource
    if last[0] is resource:
        return last[1]
    plain = _plain(resource.attributes)
    converted = (plain, _dumps(plain), str(plain.get("service.name", "")))
    _last_resource = (resource, converted)
    return converted


def record_from_span(span: ReadableSpan) -> SpanRecord:
    """Convert a finished SDK span into the source-independent :class:`SpanRecord`."""
    from otel_scope.store.records import EventRecord, LinkRecord, SpanRecord

    ctx = span.context
    start = span.start_time or 0
    return SpanRecord(
        trace_id=f"{ctx.trace_id:032x}",
        span_id=f"{ctx.span_id:016x}",
        parent_span_id=f"{span.parent.span_id:016x}" if span.parent else None,
        name=span.name,
        kind=span.kind.name,
        start_ns=start,
        end_ns=span.end_time or start,
        attributes=_plain(span.attributes),
        events=[EventRecord(e.name, e.timestamp, _plain(e.attributes)) for e in span.events],
        links=[
            LinkRecord(
                f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}", _plain(link.attributes)
            )
            for link in span.links
        ],
        status_code=span.status.status_code.name,
        status_message=span.status.description or "",
        resource=_resource(span.resource)[0],
        dropped_events_count=span.dropped_events,
    )


# The columns record_from_row reads, in its order: every reader selects exactly these.
SPAN_COLUMNS = (
    "span_id, parent_span_id, name, kind, start_ns, end_ns, status_code, status_message, "
    "attributes, events, links, resource, dropped_events"
)


# The C scanner behind json.loads, called directly: the store writes compact JSON (no leading
# whitespace), so json.loads' type checks and whitespace regex matches are pure overhead on the
# four columns of every span a million-span timeline reads.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# Every span of a process shares one resource: decoded once per distinct text (bounded).
_resources: dict[str, dict[str, Any]] = {}
_RESOURCES_CAP = 256


def _loads(text: str) -> Any:
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # not compact JSON (written by something else): the full parser
    return value if end == len(text) else json.loads(text)


def _resource_of(text: str) -> dict[str, Any]:
    resource = _resources.get(text)
    if resource is None:
        if len(_resources) >= _RESOURCES_CAP:
            _resources.clear()
        resource = _resources[text] = _loads(text)
    return dict(resource)  # a copy: a caller may change its record's resource


def record_from_row(trace_id: str, row: Sequence[Any]) -> SpanRecord:
    """One ``spans`` row (selected as :data:`SPAN_COLUMNS`) as a :class:`SpanRecord`."""
    from otel_scope.store.records import EventRecord, LinkRecord, SpanRecord

    events, links = row[9], row[10]
    return SpanRecord(
        trace_id=trace_id,
        span_id=row[0],
        parent_span_id=row[1],
        name=row[2],
        kind=row[3],
        start_ns=row[4],
        end_ns=row[5],
        status_code=row[6],
        status_message=row[7],
        attributes=_loads(row[8]),
        events=[EventRecord(e["name"], e["time_ns"], e["attributes"]) for e in _loads(events)]
        if events != "[]"
        else [],
        links=[LinkRecord(x["trace_id"], x["span_id"], x["attributes"]) for x in _loads(links)]
        if links != "[]"
        else [],
        resource=_resource_of(row[11]),
        dropped_events_count=row[12],
    )


# One encoder for the process: json.dumps() with options builds a new one on every call.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _live_bytes(conn: sqlite3.Connection) -> int:
    pages: int = (
        conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    )
    page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
    return pages * page_size


def _create_private(path: str) -> None:
    """Create the missing folders of ``path`` as ``0700`` and the file itself as ``0600``.

    Existing folders and an existing file keep their modes: the user chose those.
    """
    parent = os.path.dirname(os.path.abspath(path))
    missing = []
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:  # another process made it first
            pass
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
    except FileExistsError:
        pass


def connect_read_only(path: str) -> sqlite3.Connection:
    """A connection that cannot write: ``mode=ro``, else ``immutable=1`` (see the module doc)."""
    if not os.path.isfile(path):
        raise StoreError(f"no store at {path}")
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except BaseException:
            conn.close()
            raise
    except sqlite3.OperationalError:
        conn = sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0 or version > SCHEMA_VERSION:
        conn.close()
        if version == 0:  # created a moment ago and not set up yet, or not a store at all
            raise StoreError(f"no traces stored yet at {path}")
        raise StoreError(
            f"the store {path} was written by a newer otel-scope (schema {version}); "
            "upgrade otel-scope or point OTEL_SCOPE_STORE_PATH at another file"
        )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


class _Row(NamedTuple):
    """One span's ``spans`` column values (JSON columns encoded), and what it adds to its
    trace's summary."""

    values: tuple[Any, ...]
    errors: int
    root_name: str | None
    root_start_ns: int | None
    session_name: str | None
    service_name: str | None
    runtime: int
    compile_time: int


def _encoded(objects: list[dict[str, Any]]) -> str:
    return _dumps(objects) if objects else "[]"  # most spans have no events and no links


def _summarised(
    values: tuple[Any, ...], attributes: Mapping[str, Any], event_attributes: Iterable[Mapping[str, Any]]
) -> _Row:
    """The row for ``values`` (in ``spans`` column order), with its share of the trace summary."""
    mechanisms = {attributes.get(semconv.MECHANISM), *(a.get(semconv.MECHANISM) for a in event_attributes)}
    is_root = values[2] is None
    session = attributes.get(semconv.SESSION_NAME)
    return _Row(
        values,
        int(values[7] == "ERROR"),
        values[3] if is_root else None,
        values[5] if is_root else None,
        str(session) if session is not None else None,
        values[13] or None,
        int(semconv.MECHANISM_RUNTIME in mechanisms),
        int(semconv.MECHANISM_COMPILE_TIME in mechanisms),
    )


# The last resource encoded for _record_row, and its JSON: a file's spans share a few resources.
_last_record_resource: tuple[dict[str, Any], str] = ({}, "{}")


def _resource_json(resource: dict[str, Any]) -> str:
    global _last_record_resource
    last, text = _last_record_resource
    if resource != last:
        text = _dumps(resource)
        _last_record_resource = (dict(resource), text)
    return text


def _record_row(r: SpanRecord) -> _Row:
    """A span from any source (``otel-scope import``) as a row."""
    values = (
        r.trace_id,
        r.span_id,
        r.parent_span_id or None,
        r.name,
        r.kind,
        r.start_ns,
        r.end_ns,
        r.status_code,
        r.status_message,
        _dumps(r.attributes),
        _encoded([{"name": e.name, "time_ns": e.time_ns, "attributes": e.attributes} for e in r.events]),
        _encoded(
            [{"trace_id": x.trace_id, "span_id": x.span_id, "attributes": x.attributes} for x in r.links]
        ),
        _resource_json(r.resource),
        r.service_name,
        r.dropped_events_count,
    )
    return _summarised(values, r.attributes, [e.attributes for e in r.events])


def _span_row(span: ReadableSpan) -> _Row:
    """A finished SDK span as a row, directly: the exporter's path, run for every span.

    Builds no :class:`SpanRecord` on the way (the same values as :func:`record_from_span`
    would give; ``tests/test_store.py`` compares both paths): this runs on the exporter's thread while
    the program holds the GIL, so every allocation here is time the store falls behind.
    """
    ctx = span.context
    parent = span.parent
    start = span.start_time or 0
    attributes = _plain(span.attributes)
    events = [(e, _plain(e.attributes)) for e in span.events]
    _, resource_json, service = _resource(span.resource)
    values = (
        f"{ctx.trace_id:032x}",
        f"{ctx.span_id:016x}",
        f"{parent.span_id:016x}" if parent else None,
        span.name,
        span.kind.name,
        start,
        span.end_time or start,
        span.status.status_code.name,
        span.status.description or "",
        _dumps(attributes),
        _encoded([{"name": e.name, "time_ns": e.timestamp, "attributes": a} for e, a in events]),
        _encoded(
            [
                {
                    "trace_id": f"{link.context.trace_id:032x}",
                    "span_id": f"{link.context.span_id:016x}",
                    "attributes": _plain(link.attributes),
                }
                for link in span.links
            ]
        ),
        resource_json,
        service,
        span.dropped_events,
    )
    return _summarised(values, attributes, [a for _, a in events])


def _size(values: tuple[Any, ...]) -> int:
    """The estimate of a span's bytes that size retention works with."""
    return len(values[3]) + len(values[9]) + len(values[10]) + len(values[11]) + len(values[12]) + 120


def _merge(summaries: dict[str, list[Any]], row: _Row, size: int) -> None:
    """Fold ``row`` into its trace's summary, in ``_UPSERT_TRACE`` order minus ``updated_ns``:
    start, end, span count, errors, root name, root start, session, service, runtime,
    compile-time, bytes; the same rules the upsert applies between batches."""
    trace_id, start, end = row.values[0], row.values[5], row.values[6]
    s = summaries.get(trace_id)
    if s is None:
        summaries[trace_id] = [
            start,
            end,
            1,
            row.errors,
            row.root_name,
            row.root_start_ns,
            row.session_name,
            row.service_name,
            row.runtime,
            row.compile_time,
            size,
        ]
        return
    s[0], s[1], s[2], s[3] = min(s[0], start), max(s[1], end), s[2] + 1, s[3] + row.errors
    if row.root_start_ns is not None and (s[5] is None or row.root_start_ns < s[5]):
        s[4], s[5] = row.root_name, row.root_start_ns
    s[6] = s[6] if s[6] is not None else row.session_name
    s[7] = s[7] if s[7] is not None else row.service_name
    s[8], s[9], s[10] = max(s[8], row.runtime), max(s[9], row.compile_time), s[10] + size


FORK_WAIT_S = 1.0  # how long a fork waits for a store write in progress to commit


def _keep_inherited(conn: sqlite3.Connection | None) -> None:
    """Make sure a connection a forked child inherited is never closed, not even at its exit.

    SQLite's "How To Corrupt An SQLite Database File" (2.6): a connection must not cross fork(),
    not even to be closed. Closing one that was inside a write transaction at the fork rolls that
    transaction back in the WAL index the parent shares, and the parent's commit then fails with
    "database disk image is malformed". :func:`_before_fork` makes the inherited connection idle;
    this guards the case where the write in progress outlived :data:`FORK_WAIT_S`. One leaked
    object per store per fork; the child opens its own connection.
    """
    if conn is None:
        return
    try:
        import ctypes  # only here: a forked child with a store connection

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
    except Exception:  # no ctypes: a reference from a module global survives all but finalization
        _inherited.append(conn)


_inherited: list[sqlite3.Connection] = []
_stores: weakref.WeakSet[SpanStore] = weakref.WeakSet()
_held_at_fork: list[SpanStore] = []


def _before_fork() -> None:
    """Let each store's write in progress commit, and hold it off until the fork is done, so
    the child inherits connections with no transaction open (bounded: a stuck write is left)."""
    for store in list(_stores):
        if store._lock.acquire(timeout=FORK_WAIT_S):
            _held_at_fork.append(store)


def _after_fork_in_parent() -> None:
    while _held_at_fork:
        _held_at_fork.pop()._lock.release()


def _after_fork_in_child() -> None:
    _held_at_fork.clear()  # the locks themselves come back unlocked (:mod:`otel_scope._forksafe`)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )


class SpanStore:
    """A SQLite file of spans, safe to share between threads and processes.

    ``clock`` returns the wall-clock time in nanoseconds; retention by age is measured from the
    time a trace last received a span, so a trace imported from an old file is not pruned at once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], int] = time.time_ns,
        read_only: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.read_only = read_only
        self._clock = clock
        self._lock = _forksafe.lock()  # reset in a forked child, as the connection is
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        _stores.add(self)
        if not read_only:
            _create_private(self.path)
        with self._lock:
            self._connection()

    # -- connection ----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        # A connection inherited across fork() must not be used by the child; reopen instead.
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        _keep_inherited(self._conn)
        if self.read_only:
            conn = connect_read_only(self.path)
            self._conn, self._pid = conn, os.getpid()
            return conn
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            self._initialise(conn)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Switching to WAL takes an exclusive lock that the busy handler does not always wait for
        # when several processes create the file at once, so retry briefly ourselves.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                # A store set up before (every run after the first) needs only this connection's
                # own setting: WAL mode is kept in the file, and the schema was written in the
                # transaction that set the version. Setting auto_vacuum again costs about 1 ms.
                if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                    conn.execute("PRAGMA synchronous = NORMAL")
                    return
                # Only effective before the first table exists; lets prune() return space to the OS.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version > SCHEMA_VERSION:
                        raise StoreError(
                            f"the store {self.path} was written by a newer otel-scope (schema {version}); "
                            "upgrade otel-scope or point OTEL_SCOPE_STORE_PATH at another file"
                        )
                    for statement in (_SCHEMA + _READ_INDEXES).split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return
            except sqlite3.OperationalError as exc:
                if not ("locked" in str(exc) or "busy" in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise StoreError(f"the store {self.path} was opened read-only")
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            else:
                _keep_inherited(self._conn)
            self._conn = None

    # -- writing -------------------------------------------------------------------------------
    def add(self, spans: Sequence[ReadableSpan]) -> int:
        """Store finished SDK spans; returns how many were new (re-exported spans are ignored)."""
        return self._add_rows([_span_row(s) for s in spans])

    def add_records(self, records: Sequence[SpanRecord]) -> int:
        """Store spans from any source (``otel-scope import`` uses this); returns how many were new."""
        return self._add_rows([_record_row(r) for r in records])

    def _add_rows(self, rows: list[_Row]) -> int:
        """Insert rows built beforehand (all the Python work is done before the transaction).

        The rows go in a few thousand per statement: each statement releases the GIL, and
        getting it back from a busy traced program can take a whole switch interval (5 ms).
        """
        try:
            with self._write() as conn:
                return self._add_in_chunks(conn, rows)
        except _AlreadyStored:  # rolled back: count and summarise only the new ones
            with self._write() as conn:
                return self._add_one_by_one(conn, rows)

    def _add_in_chunks(self, conn: sqlite3.Connection, rows: list[_Row]) -> int:
        """Insert the rows a chunk per statement; raises :class:`_AlreadyStored` if some were
        already there, since the per-trace summary must then count only the new ones."""
        inserted = 0
        values = [row.values for row in rows]
        for i in range(0, len(values), _ROWS_PER_INSERT):
            chunk = values[i : i + _ROWS_PER_INSERT]
            sql = "INSERT OR IGNORE INTO spans VALUES " + ", ".join([_ROW_PLACEHOLDERS] * len(chunk))
            inserted += conn.execute(sql, [v for row in chunk for v in row]).rowcount
        if inserted != len(rows):
            raise _AlreadyStored
        summaries: dict[str, list[Any]] = {}
        for row in rows:
            _merge(summaries, row, _size(row.values))
        now = self._clock()
        conn.executemany(_UPSERT_TRACE, [(t, s[0], s[1], now, *s[2:]) for t, s in summaries.items()])
        return inserted

    def _add_one_by_one(self, conn: sqlite3.Connection, rows: list[_Row]) -> int:
        added = 0
        now = self._clock()
        for row in rows:
            if conn.execute(_INSERT_SPAN, row.values).rowcount != 1:
                continue  # already stored (a re-export, or a file imported twice)
            added += 1
            summary: dict[str, list[Any]] = {}
            _merge(summary, row, _size(row.values))
            ((trace_id, s),) = summary.items()
            conn.execute(_UPSERT_TRACE, (trace_id, s[0], s[1], now, *s[2:]))
        return added

    # -- reading -------------------------------------------------------------------------------
    def resolve(self, trace_id: str) -> str | None:
        """The full ID of the one stored trace that ``trace_id`` (full, or a hex prefix) names.

        Raises :class:`StoreError` when a prefix matches several traces, naming some of them.
        """
        prefix = trace_id.strip().lower()
        if not _HEX.match(prefix):
            return None
        with self._read() as conn:
            rows = conn.execute(
                "SELECT trace_id FROM traces WHERE trace_id >= ? AND trace_id < ? ORDER BY trace_id LIMIT 4",
                (prefix, prefix + "g"),
            ).fetchall()
        if len(rows) > 1:
            shown = ", ".join(r[0] for r in rows[:3])
            raise StoreError(
                f"trace ID prefix {prefix!r} matches several traces ({shown}, ...); type more digits"
            )
        return rows[0][0] if rows else None

    def get_trace(self, trace_id: str) -> TraceData | None:
        """The trace with this ID or unique hex prefix, or ``None`` when the store has no such trace."""
        full = self.resolve(trace_id)
        if full is None:
            return None
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY start_ns", (full,)
            ).fetchall()
        if not rows:
            return None
        from otel_scope.store.records import TraceData

        return TraceData(full, [record_from_row(full, row) for row in rows])

    def last_trace_id(self) -> str | None:
        """The trace that most recently received a span: what ``history --last`` shows."""
        with self._read() as conn:
            row = conn.execute("SELECT trace_id FROM traces ORDER BY updated_ns DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def sessions(self, limit: int = 20) -> list[SessionSummary]:
        """The ``limit`` most recently active traces, newest first."""
        from otel_scope.store.records import SessionSummary

        with self._read() as conn:
            rows = conn.execute(
                # With no parentless span (its parent is in another process) the earliest one names it.
                "SELECT t.trace_id, coalesce(t.root_name, (SELECT s.name FROM spans s "
                "WHERE s.trace_id = t.trace_id ORDER BY s.start_ns LIMIT 1)), t.session_name, "
                "t.service_name, t.start_ns, t.end_ns - t.start_ns, t.span_count, t.error_count, "
                "t.has_runtime, t.has_compile_time "
                "FROM traces t ORDER BY t.updated_ns DESC LIMIT ?",
                (max(0, limit),),
            ).fetchall()
        return [
            SessionSummary(r[0], r[1] or "", r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), bool(r[9]))
            for r in rows
        ]

    def size_bytes(self) -> int:
        """Bytes in use by live data (free pages excluded): what ``store_max_mb`` limits."""
        with self._read() as conn:
            return _live_bytes(conn)

    # -- retention -----------------------------------------------------------------------------
    def prune(self, max_age_days: float, max_mb: float) -> int:
        """Delete traces idle for more than ``max_age_days``, then the least recently active ones
        until the store is under ``max_mb``; returns how many traces were deleted.

        A limit of 0 (or less) turns that rule off. The most recently active trace is never deleted
        for size, so a single huge session that is still running keeps its spans.
        """
        doomed: list[str] = []
        with self._write() as conn:
            if max_age_days > 0:
                cutoff = self._clock() - int(max_age_days * 86_400 * 1e9)
                doomed += [
                    r[0] for r in conn.execute("SELECT trace_id FROM traces WHERE updated_ns < ?", (cutoff,))
                ]
                self._delete(conn, doomed)
            if max_mb > 0:
                doomed += self._prune_size(conn, int(max_mb * 1024 * 1024))
        if doomed:
            with self._lock:
                self._connection().execute("PRAGMA incremental_vacuum")
        return len(doomed)

    def _prune_size(self, conn: sqlite3.Connection, limit: int) -> list[str]:
        doomed: list[str] = []
        # Deleting rows leaves index pages half full, so the file shrinks less than the data
        # deleted: measure again after each round until the live pages fit under the limit.
        for _ in range(_PRUNE_ROUNDS):
            live = _live_bytes(conn)
            if live <= limit:
                break
            rows = conn.execute("SELECT trace_id, bytes FROM traces ORDER BY updated_ns ASC").fetchall()
            total = sum(size for _, size in rows)
            if len(rows) < 2 or total <= 0:
                break
            # Per-trace sizes are estimates; scale them to what the file really holds.
            scale, excess = live / total, live - limit * _PRUNE_TARGET
            batch: list[str] = []
            freed = 0.0
            for trace_id, size in rows[:-1]:
                if freed >= excess:
                    break
                batch.append(trace_id)
                freed += size * scale
            self._delete(conn, batch)
            doomed += batch
        return doomed

    @staticmethod
    def _delete(conn: sqlite3.Connection, trace_ids: list[str]) -> None:
        conn.executemany("DELETE FROM spans WHERE trace_id = ?", [(t,) for t in trace_ids])
        conn.executemany("DELETE FROM traces WHERE trace_id = ?", [(t,) for t in trace_ids])
