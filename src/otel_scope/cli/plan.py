"""``otel-scope plan``: what each target would get, and why, without running the program.

Reads the settings as a run would (``[tool.otel-scope]``, ``OTEL_SCOPE_*``), with the same
``--scope-...`` flags on top, finds the targeted modules' source on ``sys.path`` and the working
directory *without importing them*, and prints the planner's decision for every function.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import os
import sys
from pathlib import Path
from typing import Any

from rich.text import Text

from otel_scope.cli._common import CliError, make_console, print_json
from otel_scope.config import SETTING_NAMES, ConfigError, env_var_for, flag_for, load_settings
from otel_scope.config.patterns import TargetPattern, wildcard_skips
from otel_scope.targets.planner import RUNTIME_REACH, decide_function, requests_from_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show what each target would get, and why",
        description=__doc__.splitlines()[0],
    )
    for name in SETTING_NAMES:
        parser.add_argument(flag_for(name), dest=f"setting_{name}", metavar="VALUE", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def _find_source(module: str) -> Path | None:
    """The source file of ``module`` found like the import system would, but without importing."""
    search: list[str] | None = [os.getcwd(), *sys.path]
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin.endswith((".py", *_EXTENSIONS)) else None


_EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _modules_for(pattern: TargetPattern) -> list[tuple[str, Path]]:
    source = _find_source(pattern.module)
    if source is None:
        return []
    found = [(pattern.module, source)]
    if pattern.module_prefix and source.name.startswith("__init__."):
        files = [p for p in source.parent.rglob("*") if p.name.endswith((".py", *_EXTENSIONS))]
        for path in sorted(files):
            rel = path.relative_to(source.parent)
            rel = rel.with_name(rel.name.split(".")[0])  # shop.cpython-311-x86_64-linux-gnu.so -> shop
            parts = [p for p in rel.parts if p != "__init__"]
            if parts:
                found.append((".".join([pattern.module, *parts]), path))
    return found


def build_plan(settings: Any) -> list[dict[str, Any]]:
    # Here, not at the top: every otel-scope command imports this module to register its
    # options, and the engine would load the instrumentation into each of them.
    from otel_scope.engine.adapter import function_qualnames
    from otel_scope.engine.discovery import COMPILED_NOTE, THIS_NAME_ONLY

    """One row per function the settings select (or per pattern that selects nothing yet)."""
    requests = requests_from_settings(settings)
    rows: list[dict[str, Any]] = []
    functions: dict[tuple[str, str], Path] = {}
    copied_in: dict[tuple[str, str], Path] = {}  # named exactly, but no def of that name there
    for request in requests:
        modules = _modules_for(request.pattern)
        if not modules:
            rows.append(
                {
                    "function": request.pattern.text,
                    "mechanism": "pending",
                    "capture": "",
                    "why": ["module not found on the path now: applied when it is imported"],
                }
            )
        for module, path in modules:
            if path.name.endswith(_EXTENSIONS):
                rows.append(
                    {"function": module, "mechanism": "runtime", "capture": "", "why": [COMPILED_NOTE]}
                )
                continue
            try:
                names = function_qualnames(path.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, ValueError) as exc:
                rows.append({"function": module, "mechanism": "off", "capture": "", "why": [str(exc)]})
                continue
            pattern = request.pattern
            for qualname in names:
                if pattern.is_wildcard and wildcard_skips(qualname):
                    continue
                if pattern.matches(module, qualname) and "<locals>" not in qualname:
                    functions.setdefault((module, qualname), path)
            if pattern.names_function and pattern.attr is not None and pattern.attr not in names:
                copied_in.setdefault((module, pattern.attr), path)
    for (module, qualname), path in sorted({**functions, **copied_in}.items()):
        if any(p.matches(module, qualname) for p in settings.exclude):
            continue
        selecting = [r for r in requests if r.pattern.matches(module, qualname)]
        decision = decide_function(selecting, settings, True)
        capture = decision.capture
        why = list(decision.reasons)
        if (module, qualname) in copied_in:  # its span is not reached through its code
            why = [w for w in why if not w.endswith(RUNTIME_REACH)]
            why.append(
                f"not defined in {path.name}: if a function is bound there from elsewhere (copied "
                f"in, assigned, imported), its runtime span is a {THIS_NAME_ONLY} and its other "
                "names are not traced; if nothing is, the target selects nothing"
            )
        rows.append(
            {
                "function": f"{module}.{qualname}",
                "mechanism": decision.mechanism,
                "capture": _describe(capture),
                "why": why,
            }
        )
    return rows


def _describe(capture: Any) -> str:
    if capture is None:
        return ""
    names = "all locals" if capture.locals is None else ", ".join(sorted(capture.locals)) or "no locals"
    lines = f"; lines {'+'.join(map(str, capture.lines))}" if capture.lines else ""
    return f"{names}{lines} ({capture.level})"


def run(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    for name in SETTING_NAMES:
        value = getattr(args, f"setting_{name}")
        if value is not None:
            environ[env_var_for(name)] = value
    try:
        settings = load_settings(environ)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    rows = build_plan(settings)
    if args.json:
        print_json(rows)
        return 0
    out = make_console()
    out.print(f"mode {settings.mode}, environment {settings.environment}, session {settings.session}")
    if not rows:
        out.print("no targets: set --scope-targets, --scope-locals or [tool.otel-scope] in pyproject.toml")
        return 0
    width = max(len(row["function"]) for row in rows)
    for row in rows:
        line = Text(f"{row['function']:<{width}}  ", style="bold")
        line.append(row["mechanism"], style="cyan")
        if row["capture"]:
            line.append(f"  {row['capture']}")
        out.print(line)
        for why in dict.fromkeys(row["why"]):
            out.print(Text(f"    {why}", style="dim"))
    return 0
