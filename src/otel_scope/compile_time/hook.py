"""The import hook: rewrite modules that hold compile-time targets as they are imported.

:class:`ImportHook` sits first on ``sys.meta_path``. For each import it asks the engine about the
module *name* first (``plans_for``, ``wants``), so an untargeted import costs two cheap calls and
no file access. For a targeted one it asks the other finders for the real spec and wraps its
loader in a :class:`ScopeLoader`, which:

* rewrites the source of plain ``.py`` modules (``SourceFileLoader``, editable installs
  included) and leaves everything else (extension modules, zip imports, namespace packages,
  modules without source) as it is, with one DEBUG message;
* leaves modules that pytest's assertion rewriter claims to pytest (both rewrites cannot apply,
  and losing assertion rewriting would break the user's tests);
* serves ``get_code`` (``python -m``) and forwards everything else to the original loader
  (``get_source`` for ``inspect.getsource``, ``is_package``, resource readers);
* caches rewritten code with ``marshal`` in ``$XDG_CACHE_HOME/otel-scope`` (``~/.cache`` when
  unset), keyed by the source, its path, the plans, the Python version and otel-scope's version;
  it never writes the user's ``__pycache__``;
* calls ``loaded(module)`` after any wanted module has executed, so runtime mode can wrap
  functions of modules imported later.

Unlike Logfire's hook (see ``docs/compile-time.md``) it filters before reading any source, keeps
its injected names underscore-prefixed, and keeps pytest's assertion rewriting.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import marshal
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import CodeType, ModuleType
from typing import TYPE_CHECKING, Any, cast

from otel_scope._version import __version__
from otel_scope.compile_time import skips
from otel_scope.targets.plan import CapturePlan

# The specs' module (two dataclasses) is the rewriter's: a start that rewrites nothing skips it.
if TYPE_CHECKING:
    from otel_scope.compile_time.spec import SpecData

_log = logging.getLogger("otel_scope")

# Bump when the rewritten code's shape changes, so older cache entries are not used.
CACHE_FORMAT = "4"

PlansFor = Callable[[str], "Mapping[str, CapturePlan | None] | None"]

# File -> digest of the source text its rewritten code was made from: on-demand recompilation of a
# function rewritten at import checks the current source against it (the rewritten code cannot be
# compared with a plain compile of the source).
_rewritten_sources: dict[str, str] = {}


def source_digest(source: str) -> str:
    import hashlib  # here, not at the top: runtime mode installs this hook and never hashes

    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def rewritten_from(filename: str) -> str | None:
    """The digest of the source the import hook rewrote ``filename`` from (None: not rewritten)."""
    return _rewritten_sources.get(filename)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/otel-scope/<python tag>``, else ``~/.cache/otel-scope/<python tag>``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "otel-scope" / (sys.implementation.cache_tag or "python")


def _is_pytest_loader(loader: object) -> bool:
    return type(loader).__module__.startswith("_pytest.")


class ImportHook(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that rewrites targeted modules (see the module doc).

    ``plans_for(name)`` returns the plans of a module (``{qualname or glob: CapturePlan}``) or
    ``None``; ``wants(name)`` says whether ``loaded(module)`` should be called after the module
    executed, even without plans. Both are called with the module name only.
    """

    def __init__(
        self,
        plans_for: PlansFor,
        wants: Callable[[str], bool] | None = None,
        loaded: Callable[[ModuleType], None] | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.plans_for = plans_for
        self.wants = wants
        self.loaded = loaded
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.results: dict[str, tuple[list[str], dict[str, str]]] = {}  # module -> instrumented, skipped
        self.cache_hits = 0
        self._busy = threading.local()

    # --- installation -------------------------------------------------------------------------

    def install(self) -> None:
        """Put the hook first on ``sys.meta_path`` (idempotent)."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        """Take the hook off ``sys.meta_path`` (idempotent); modules already loaded stay as they are."""
        while self in sys.meta_path:
            sys.meta_path.remove(self)

    # --- finding ------------------------------------------------------------------------------

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        busy = getattr(self._busy, "names", None)
        if busy is None:
            busy = self._busy.names = set()
        if fullname in busy:
            return None  # another finder asked the import system about this module again
        try:
            plans = self.plans_for(fullname) or None
            wanted = self.wants is not None and bool(self.wants(fullname))
        except Exception:
            _log.warning("otel-scope: the engine failed to plan module %s", fullname, exc_info=True)
            return None
        if plans is None and not wanted:
            return None
        busy.add(fullname)
        try:
            spec = self._real_spec(fullname, path, target)
        finally:
            busy.discard(fullname)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        if plans is not None and not _rewritable(fullname, spec):
            plans = None
        if plans is None and (not wanted or not hasattr(loader, "exec_module")):
            return None
        spec.loader = ScopeLoader(loader, self, plans)
        return spec

    def _real_spec(
        self, fullname: str, path: Any, target: ModuleType | None
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in list(sys.meta_path):
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                return cast(importlib.machinery.ModuleSpec, spec)
        return None

    # --- code ---------------------------------------------------------------------------------

    def code_for(self, fullname: str, loader: Any, plans: Mapping[str, CapturePlan | None]) -> CodeType:
        """The rewritten code of module ``fullname``: from the cache, or rewritten and cached."""
        origin = loader.get_filename(fullname)
        data = loader.get_data(origin)
        source = importlib.util.decode_source(data)
        key = _cache_key(data, plans, fullname, origin)
        path = self.cache_dir / f"{fullname}-{key}.bin"
        cached = _read_cache(path)
        if cached is not None:
            template, instrumented, skipped, specs = cached
            self.cache_hits += 1
            skips.note_module(fullname, skipped)
            code = template
            if specs:  # marshal keeps the probes' placeholders: each load binds probes of its own
                from otel_scope.compile_time.recorder import bind  # here: runtime mode never needs it

                code = bind(template, specs)
        else:
            from otel_scope.compile_time.rewriter import rewrite_source  # libcst: only when rewriting

            result = rewrite_source(source, origin, fullname, plans)
            code, instrumented, skipped = result.code, result.instrumented, result.skipped
            _write_cache(path, (result.template, instrumented, skipped, result.spec_data()))
        _rewritten_sources[origin] = source_digest(source)
        self.results[fullname] = (list(instrumented), dict(skipped))
        return code


def _rewritable(fullname: str, spec: importlib.machinery.ModuleSpec) -> bool:
    loader = spec.loader
    if _is_pytest_loader(loader):
        _log.debug("otel-scope: pytest rewrites the assertions of %s; compile-time skips it", fullname)
        return False
    if not isinstance(loader, importlib.machinery.SourceFileLoader):
        _log.debug(
            "otel-scope: %s has no Python source file (%s); compile-time capture skips it",
            fullname,
            type(loader).__name__,
        )
        return False
    return True


def _cache_key(data: bytes, plans: Mapping[str, CapturePlan | None], fullname: str, origin: str) -> str:
    """Everything the rewritten code depends on: source, plans, module name and file path (the
    code names its file: identical sources in two directories must not share an entry), Python
    and otel-scope versions. Settings reach the rewrite only through the plans and exclusions."""
    import hashlib

    digest = hashlib.sha256(data)
    digest.update(f"\0{fullname}\0{os.path.abspath(origin)}".encode())
    for name, plan in plans.items():  # in order: the first matching glob wins
        digest.update(f"\0{name}\0{plan.key()}\0{plan.target}".encode() if plan else f"\0{name}\0-".encode())
    digest.update(f"\0{sys.version}\0{__version__}\0{CACHE_FORMAT}".encode())
    return digest.hexdigest()[:40]


# A cache entry: the rewritten module's code with its probes' placeholders (see recorder.bind),
# what was rewritten, what was skipped and why, and the probes' specs.
_Entry = tuple[CodeType, list[str], dict[str, str], "tuple[tuple[str, SpecData], ...]"]


def _read_cache(path: Path) -> _Entry | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        code, instrumented, skipped, specs = marshal.loads(data)
    except Exception:
        _log.debug("otel-scope: ignoring unreadable cache entry %s", path)
        return None
    return (code, instrumented, skipped, specs) if isinstance(code, CodeType) else None


def _write_cache(path: Path, value: _Entry) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(marshal.dumps(value))
        os.replace(tmp, path)
    except OSError as exc:
        _log.debug("otel-scope: cannot write the rewrite cache %s: %s", path, exc)


class ScopeLoader(importlib.abc.Loader):
    """Wraps a module's real loader: rewritten code in, everything else forwarded."""

    def __init__(self, loader: Any, hook: ImportHook, plans: Mapping[str, CapturePlan | None] | None) -> None:
        self.loader = loader
        self.hook = hook
        self.plans = plans

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)  # get_source, get_filename, is_package, resources...

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        if self.plans is None:
            self.loader.exec_module(module)
        else:
            # Plans are kept only for source files (_rewritable), whose get_code never gives None.
            exec(cast(CodeType, self.get_code(module.__name__)), module.__dict__)
        loaded = self.hook.loaded
        if loaded is not None:
            try:
                loaded(module)
            except Exception:
                _log.warning("otel-scope: the engine failed on module %s", module.__name__, exc_info=True)

    def get_code(self, fullname: str) -> CodeType | None:
        if self.plans is None:
            return cast("CodeType | None", self.loader.get_code(fullname))
        try:
            return self.hook.code_for(fullname, self.loader, self.plans)
        except Exception:
            _log.warning("otel-scope: could not rewrite %s; imported unchanged", fullname, exc_info=True)
            return cast("CodeType | None", self.loader.get_code(fullname))

    def get_source(self, fullname: str) -> str | None:
        return cast("str | None", self.loader.get_source(fullname))

    def is_package(self, fullname: str) -> bool:
        return bool(self.loader.is_package(fullname))
