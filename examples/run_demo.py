"""The README's main job: run the example shop under otel-scope in hybrid mode, show its trace,
and write the same trace as a web page (``otel-scope view --html``) to open in a browser.

Called by ``python3 dev.py demo`` inside the project's virtual environment; ``--html PATH``
chooses where the page goes (default ``examples/shop-trace.html``). With no collector
configured this uses the embedded local store; with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (or a
collector listening on localhost:4317) the trace goes there too.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default=str(HERE / "shop-trace.html"), help="where to write the web page")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("OTEL_SERVICE_NAME", "shop")
    command = [str(BIN / "opentelemetry-instrument"), "--scope-mode", "hybrid", sys.executable, "app.py"]
    print(
        "$ cd examples && "
        + " ".join(["opentelemetry-instrument", "--scope-mode", "hybrid", "python", "app.py"])
    )
    rc = subprocess.call(command, cwd=HERE, env=env)
    if rc != 0:
        return rc
    print("\n$ otel-scope history --last", flush=True)
    rc = subprocess.call([str(BIN / "otel-scope"), "history", "--last"], env=env)
    if rc != 0:
        return rc
    print(f"\n$ otel-scope view --last --html {args.html}", flush=True)
    rc = subprocess.call([str(BIN / "otel-scope"), "view", "--last", "--html", args.html], env=env)
    if rc == 0:
        print(
            f"\nSee it in the browser: open {args.html} (one file, works offline), or serve it with\n"
            f"    {BIN / 'otel-scope'} view --last\n"
            "Open a check_stock bar: its line `reserved = already_reserved + 1` shows reserved = 1 "
            "for an order of 3 widgets (the bug).",
            flush=True,
        )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
