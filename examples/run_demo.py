"""The README's main job: run the example shop under otel-scope in hybrid mode, then show its trace.

Called by ``python3 dev.py demo`` inside the project's virtual environment. With no collector
configured this uses the embedded local store; with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (or a
collector listening on localhost:4317) the trace goes there too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def main() -> int:
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
    return subprocess.call([str(BIN / "otel-scope"), "history", "--last"], env=env)


if __name__ == "__main__":
    raise SystemExit(main())
