"""What value-based secret scrubbing costs per captured value, side by side in one run.

    .venv/bin/python benchmarks/bench_scrubbing.py [--values N] [--json FILE]

For each kind of value, nanoseconds per value (best of several repeats, CPU time) for:

* ``repr``: the builtin ``repr()``, what a hand-written attribute would cost (no bounds, no
  redaction).
* ``serializer, no scrub``: otel-scope's serializer with the value scrubber replaced by the
  identity, i.e. name-based redaction only (the code before issue 15).
* ``serializer``: the serializer as shipped, scrubbing every string by value.

and the ratio of the last two. Values come in two forms: ``repeated`` (the same values on every
call, as arguments usually are: the scrubber remembers its answers) and ``unique`` (a fresh string
each time, e.g. a loop variable: every value is scanned).
"""

from __future__ import annotations

import argparse
import json
import time

from otel_scope.capture import Serializer

PROSE = "The quick brown fox jumps over the lazy dog while the order {i} waits in the queue"
KINDS = {
    "short str": lambda i: f"sku-{i}",
    "URL": lambda i: f"https://api.example.com/v1/orders/{i}?page=2&sort=name",
    "80-char prose": lambda i: PROSE.format(i=i),
    "400-char text": lambda i: (PROSE.format(i=i) + " ") * 5,
    "dict of 4 str": lambda i: {"user": f"u{i}", "city": "Lyon", "url": f"/a/{i}", "note": "ok"},
    "list of 8 str": lambda i: [f"item-{i}-{k}" for k in range(8)],
    "int": lambda i: i,
}


def _per_value(make_render, values: list, repeat: int) -> float:
    """Best CPU time per value; each repeat gets a fresh renderer, so nothing is remembered
    between repeats (a ``unique`` value is really seen for the first time)."""
    best = float("inf")
    for _ in range(repeat):
        render = make_render()
        start = time.process_time()
        for v in values:
            render(v)
        best = min(best, time.process_time() - start)
    return best / len(values) * 1e9


def _unscrubbed() -> Serializer:
    serializer = Serializer()
    serializer._scrub = lambda text: text  # name-based redaction only
    return serializer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    results = []
    print(f"{'value':16} {'form':9} {'repr':>8} {'no scrub':>9} {'scrub':>8} {'ratio':>6}   (ns per value)")
    for kind, make in KINDS.items():
        for form in ("repeated", "unique"):
            values = [make(i % 10 if form == "repeated" else i) for i in range(args.values)]
            row = {
                "value": kind,
                "form": form,
                "repr_ns": _per_value(lambda: repr, values, args.repeat),
                "no_scrub_ns": _per_value(_unscrubbed, values, args.repeat),
                "scrub_ns": _per_value(Serializer, values, args.repeat),
            }
            row["ratio"] = row["scrub_ns"] / row["no_scrub_ns"]
            results.append(row)
            print(
                f"{kind:16} {form:9} {row['repr_ns']:8.0f} {row['no_scrub_ns']:9.0f} "
                f"{row['scrub_ns']:8.0f} {row['ratio']:6.2f}"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
