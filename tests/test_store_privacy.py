"""The local store is private to its owner, and the commands that read it never write it.

The tests about other users run the readers as a second local user (``nobody`` through
``setpriv``) where the machine allows it, and are skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_scope.store import SpanStore
from test_cli_support import OTEL_SCOPE, fill_store, run_cli

NOBODY = 65534
EMPTY = hashlib.sha256(b"").hexdigest()
SETPRIV = shutil.which("setpriv")
needs_second_user = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None,
    reason="running as another local user needs root and setpriv (util-linux)",
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``folder`` with its content hash and modification time."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _as_nobody(*args: str, store: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "OTEL_SCOPE_STORE_PATH": str(store), "HOME": str(cwd)}
    command = [str(SETPRIV), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *args]
    return subprocess.run(
        command, capture_output=True, text=True, errors="replace", cwd=cwd, env=env, timeout=60, check=False
    )


def _require_nobody_runs_otel_scope(cwd: Path) -> None:
    """Skip unless the second user can start otel-scope at all: a venv or Python under a private
    folder (a checkout in /root, pyenv's libpython) is out of its reach, and then a refusal would
    say nothing about the store."""
    probe = _as_nobody(str(OTEL_SCOPE), "--version", store=cwd / "none", cwd=cwd)
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run {OTEL_SCOPE} here: {probe.stderr.strip()[:200]}")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every local user can enter (pytest's own tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="otel-scope-privacy-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_new_store_is_a_0600_file_in_0700_folders_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "traces.sqlite3"
    tmp_path.chmod(0o751)
    old = os.umask(0)
    try:
        fill_store(path, "first")
        store = SpanStore(path)  # a second writer while the WAL files exist
        try:
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            modes = {p.name: _mode(p) for p in files if p.exists()}
        finally:
            store.close()
    finally:
        os.umask(old)
    assert modes and set(modes.values()) == {0o600}, modes
    assert _mode(tmp_path / "a") == 0o700 and _mode(tmp_path / "a" / "b") == 0o700
    assert _mode(tmp_path) == 0o751  # a folder that existed keeps the mode its owner gave it


def test_a_store_file_that_exists_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite3"
    fill_store(path, "first")
    path.chmod(0o640)
    fill_store(path, "second")
    assert _mode(path) == 0o640


def test_an_exported_file_is_private_unless_it_already_exists(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    (trace_id,) = fill_store(store, "first")
    new = tmp_path / "new.json"
    assert run_cli("export", trace_id, "-o", str(new), cwd=tmp_path, store=store).returncode == 0
    assert _mode(new) == 0o600
    existing = tmp_path / "existing.json"
    existing.write_text("old")
    existing.chmod(0o644)
    assert run_cli("export", trace_id, "-o", str(existing), cwd=tmp_path, store=store).returncode == 0
    assert _mode(existing) == 0o644 and existing.read_text().startswith("{")


def test_readers_never_create_a_store(tmp_path: Path) -> None:
    store = tmp_path / "none" / "traces.sqlite3"
    for args in (("sessions",), ("history",), ("export", "abc")):
        result = run_cli(*args, cwd=tmp_path, store=store)
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "none").exists()


def _no_file_growth() -> None:
    # Any write that would grow a file fails (EFBIG), as on a full disk; Python ignores SIGXFSZ.
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_readers_work_on_a_full_disk_and_leave_the_store_unchanged(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    store = folder / "traces.sqlite3"
    (trace_id,) = fill_store(store, "checkout")
    before = _fingerprint(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_SCOPE_")}
    env["OTEL_SCOPE_STORE_PATH"] = str(store)
    for args in (("sessions",), ("history", trace_id), ("export", trace_id)):
        result = subprocess.run(
            [str(OTEL_SCOPE), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
            preexec_fn=_no_file_growth,
            check=False,
        )
        assert result.returncode == 0, (args, result.stderr)
        assert trace_id[:8] in result.stdout
    after = _fingerprint(folder)
    assert after["traces.sqlite3"] == before["traces.sqlite3"]
    # SQLite's WAL readers may leave its two side files, empty, where the folder allows it.
    assert {name: digest for name, (digest, _) in after.items() if name not in before} in (
        {},
        {"traces.sqlite3-wal": EMPTY, "traces.sqlite3-shm": EMPTY},
    )


@needs_second_user
def test_another_local_user_cannot_read_the_store(shared_dir: Path) -> None:
    _require_nobody_runs_otel_scope(shared_dir)
    store = shared_dir / "state" / "traces.sqlite3"
    fill_store(store, "checkout")
    denied = _as_nobody("cat", str(store), store=store, cwd=shared_dir)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    listing = _as_nobody(str(OTEL_SCOPE), "sessions", store=store, cwd=shared_dir)
    assert listing.returncode != 0 and "checkout" not in listing.stdout
    assert len(listing.stderr.strip().splitlines()) == 1, listing.stderr


@needs_second_user
def test_a_store_shared_read_only_with_another_user_is_readable_and_unchanged(shared_dir: Path) -> None:
    _require_nobody_runs_otel_scope(shared_dir)
    folder = shared_dir / "state"
    store = folder / "traces.sqlite3"
    (trace_id,) = fill_store(store, "checkout")
    # The owner shares it read-only: the reader may not write the file or create files beside it.
    folder.chmod(0o755)
    store.chmod(0o644)
    before = _fingerprint(folder)
    for args in (("sessions",), ("history", trace_id), ("export", trace_id)):
        result = _as_nobody(str(OTEL_SCOPE), *args, store=store, cwd=shared_dir)
        assert result.returncode == 0, (args, result.stderr)
        assert trace_id[:8] in result.stdout
    assert _fingerprint(folder) == before
