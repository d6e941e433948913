"""A trace held in memory (a file, Jaeger's or Tempo's answer) put where the timeline reads it.

The timeline reads every trace through :class:`~otel_scope.timeline.reader.TraceReader`, the same
indexed, incremental queries for a trace from the local store as for one from anywhere else,
so there is one renderer, one summary and one ``--where`` search. A trace that did not come from
the store is first written to a private temporary store, removed afterwards.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from otel_scope.store import SpanStore
from otel_scope.store.records import SpanRecord, TraceData
from otel_scope.timeline.reader import TraceReader

_BATCH = 5_000


@contextmanager
def staged(trace: TraceData) -> Iterator[TraceReader]:
    """A reader over ``trace`` (its warnings travel on :attr:`TraceReader.warnings`)."""
    with staged_spans(trace.trace_id, trace.spans) as reader:
        reader.warnings = list(trace.warnings)
        yield reader


@contextmanager
def staged_spans(trace_id: str, spans: Iterable[SpanRecord]) -> Iterator[TraceReader]:
    """A reader over spans that arrive one by one, written in batches to bound memory."""
    with tempfile.TemporaryDirectory(prefix="otel-scope-") as directory:
        path = os.path.join(directory, "trace.sqlite3")
        store = SpanStore(path)
        try:
            batch: list[SpanRecord] = []
            for span in spans:
                batch.append(span)
                if len(batch) >= _BATCH:
                    store.add_records(batch)
                    batch.clear()
            store.add_records(batch)
        finally:
            store.close()
        with TraceReader(path, trace_id) as reader:
            yield reader
