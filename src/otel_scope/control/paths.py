"""Where a process's control socket lives, and the checks that keep it private to its user.

The socket is the only thing standing between any local user and "capture the locals of this
service", so the rules are strict: it lives in a directory that only the process's own user can
enter (``$XDG_RUNTIME_DIR/otel-scope``, else ``<tmp>/otel-scope-<uid>``), which must be a real
directory (not a symlink), owned by that user, with no group or other permissions; the socket
itself is made ``0600``. A directory that fails a check is never "fixed" or used: someone else
may have created it to intercept the socket.

The server and ``otel-scope targets`` may not see the same environment (``XDG_RUNTIME_DIR`` set in
one shell and not in another, or too long for a socket path), so a client looks in every
candidate directory, in the same order the server tried them.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

# sun_path is 108 bytes on Linux (104 on macOS), including the terminating NUL.
MAX_SOCKET_PATH = 100


class UnsafeDirectory(OSError):
    """A candidate directory exists but could be reached by another user."""


def candidate_dirs() -> list[Path]:
    """The directories a control socket may be in, in the order the server tries them."""
    dirs = []
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        dirs.append(Path(xdg) / "otel-scope")
    dirs += [Path(tmp) / f"otel-scope-{os.getuid()}" for tmp in _temp_dirs()]
    return dirs


def _temp_dirs() -> list[str]:
    """Where :func:`tempfile.gettempdir` looks on POSIX, in its order, as absolute paths.

    Not ``gettempdir()`` itself: it picks its answer by creating and deleting a file in each
    place, about 0.8 ms of every start with live control, and :func:`private_dir` checks and
    makes its own directory in each candidate anyway (so an unusable ``$TMPDIR`` is passed over
    here too). A temporary directory the program set (``tempfile.tempdir``) is the one used.
    """
    if tempfile.tempdir is not None:
        return [os.path.abspath(tempfile.tempdir)]
    named = [os.environ.get(variable, "") for variable in ("TMPDIR", "TEMP", "TMP")]
    found = [os.path.abspath(d) for d in named if d] + ["/tmp", "/var/tmp", "/usr/tmp"]
    return list(dict.fromkeys(found))


def socket_name(pid: int) -> str:
    return f"{pid}.sock"


def check_private_dir(path: Path) -> None:
    """Raise :class:`UnsafeDirectory` unless ``path`` is a directory only this user can enter."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory (a symlink or a file is never followed)")
    if info.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()})")
    if info.st_mode & 0o077:
        raise UnsafeDirectory(f"{path} has mode {stat.S_IMODE(info.st_mode):o}; it must be 700")


def private_dir() -> Path:
    """A directory for this process's socket: the first candidate that exists safely or can be made.

    Raises :class:`OSError` naming every candidate tried when none is usable.
    """
    problems = []
    for path in candidate_dirs():
        if len(str(path)) + 12 > MAX_SOCKET_PATH:  # room for "/<pid>.sock"
            problems.append(f"{path} is too long for a socket path")
            continue
        try:
            if not (path.parent.is_dir() and os.access(path.parent, os.W_OK | os.X_OK)):
                problems.append(f"{path.parent} is not a writable directory")
                continue
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                pass
            check_private_dir(path)
            return path
        except OSError as exc:
            problems.append(str(exc))
    raise OSError("no private directory for the control socket: " + "; ".join(problems))


def find_socket(pid: int) -> Path | None:
    """The control socket of process ``pid`` if one of the candidate directories holds it."""
    for path in candidate_dirs():
        sock = path / socket_name(pid)
        try:
            if stat.S_ISSOCK(os.lstat(sock).st_mode):
                return sock
        except OSError:
            continue
    return None
