"""The control socket: line-delimited JSON over a Unix socket only the process's user can reach.

It runs inside the user's program, so it is built to be invisible there: daemon threads (never
holding up exit), no effect on signals (``MSG_NOSIGNAL``: a client that hangs up cannot raise
``SIGPIPE`` even in a program that restored its default action), every socket error handled,
bounded resources (:data:`MAX_LINE` bytes per request, :data:`MAX_CLIENTS` served at once), a
deadline for each whole request (:data:`REQUEST_DEADLINE_S` from the previous reply or the
connection, however slowly its bytes trickle in, so a client sending a byte every few seconds
cannot keep a slot), a reply for every malformed request (also JSON nested too deeply to decode),
a listen backlog of :data:`BACKLOG` so a burst of connects is queued rather than refused, and a
request applied only once its full line has arrived, so a client that disconnects mid-request
changes nothing.

Wire format: one JSON object per line (UTF-8, ``\\n``-terminated) each way; a connection may
carry several requests. See :mod:`otel_scope.control.commands` for the requests and replies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otel_scope.control.paths import private_dir, socket_name

_log = logging.getLogger("otel_scope")

MAX_LINE = 64 * 1024
MAX_CLIENTS = 4
REQUEST_DEADLINE_S = 10.0
BACKLOG = socket.SOMAXCONN  # the kernel caps it (net.core.somaxconn); queued connects cost nothing
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_PEERCRED = getattr(socket, "SO_PEERCRED", None)


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line: compact JSON, ASCII-safe, newline-terminated."""
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


class ControlServer:
    """Serves ``handler(request) -> reply`` on ``<private dir>/<pid>.sock`` until :meth:`stop`."""

    def __init__(self, handler: Callable[[object], dict[str, Any]], directory: Path | None = None) -> None:
        self._handler = handler
        self._directory = directory
        self._sock: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._stopped = threading.Event()
        self._owner = os.getpid()  # a forked child inherits this object, but not the socket's file
        self.path: Path | None = None

    def start(self) -> Path:
        """Bind the socket (``0600``) and start serving; raises ``OSError`` if that is impossible."""
        directory = self._directory or private_dir()
        path = directory / socket_name(os.getpid())
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by an earlier process with this pid that could not clean up
        _remove_stale(directory)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)  # the directory is 0700 already: nobody could reach it meanwhile
            sock.listen(BACKLOG)
            info = os.stat(path)
        except OSError:
            sock.close()
            raise
        self._sock, self.path, self._inode = sock, path, (info.st_dev, info.st_ino)
        thread = threading.Thread(target=self._serve, name="otel-scope-control", daemon=True)
        thread.start()
        return path

    def stop(self) -> None:
        """Stop accepting and remove the socket file (if it is still ours); idempotent.

        In a forked child only the inherited descriptor is closed: shutting the socket down or
        unlinking its file would take the control channel away from the parent.
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        sock, self._sock = self._sock, None
        ours = os.getpid() == self._owner
        if sock is not None:
            if ours:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            sock.close()
        if ours and self.path is not None and self._inode is not None:
            with contextlib.suppress(OSError):
                info = os.stat(self.path)
                if (info.st_dev, info.st_ino) == self._inode:
                    self.path.unlink()

    # -- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        sock = self._sock
        while sock is not None and not self._stopped.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                if self._stopped.wait(0.1):  # e.g. out of file descriptors: do not spin
                    return
                continue
            if not self._slots.acquire(blocking=False):
                self._reject(conn, "busy: too many control clients at once; try again")
                continue
            threading.Thread(
                target=self._client, args=(conn,), name="otel-scope-control-client", daemon=True
            ).start()

    def _client(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(REQUEST_DEADLINE_S)
            refusal = _refuse_peer(conn)
            if refusal:
                self._send(conn, {"ok": False, "error": refusal})
                return
            buffer = b""
            deadline = time.monotonic() + REQUEST_DEADLINE_S
            while not self._stopped.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    if buffer:
                        self._send(conn, {"ok": False, "error": _late(REQUEST_DEADLINE_S)})
                    return
                conn.settimeout(left)
                try:
                    chunk = conn.recv(8192)
                except TimeoutError:
                    if buffer:
                        self._send(conn, {"ok": False, "error": _late(REQUEST_DEADLINE_S)})
                    return
                if not chunk:
                    return  # hung up; an unfinished line is dropped, never applied
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        if not self._send(conn, self._reply(line)):
                            return
                        deadline = time.monotonic() + REQUEST_DEADLINE_S
                if len(buffer) > MAX_LINE:
                    self._send(conn, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                    return
        except OSError:  # timeout, reset: the client is gone and the program is not concerned
            pass
        except Exception:
            _log.debug("otel-scope control client failed", exc_info=True)
        finally:
            conn.close()
            self._slots.release()

    def _reply(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_LINE:
            return {"ok": False, "error": f"request longer than {MAX_LINE} bytes"}
        try:
            message = json.loads(line)
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            return {"ok": False, "error": f"malformed request (not a JSON object on one line): {exc}"}
        except RecursionError:
            return {"ok": False, "error": "malformed request: JSON nested too deeply"}
        try:
            return self._handler(message)
        except RecursionError:  # a deep structure the handler walked
            return {"ok": False, "error": "malformed request: JSON nested too deeply"}

    @staticmethod
    def _send(conn: socket.socket, message: dict[str, Any]) -> bool:
        try:
            conn.sendall(encode(message), _SEND_FLAGS)
            return True
        except OSError:
            return False

    def _reject(self, conn: socket.socket, error: str) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(1.0)
            self._send(conn, {"ok": False, "error": error})
        conn.close()


def _late(seconds: float) -> str:
    return f"request not completed within {seconds:g} s (one JSON object per line); closing"


def _refuse_peer(conn: socket.socket) -> str:
    """Why this client is refused ("" if it is this process's user or root), where the OS says."""
    if _PEERCRED is None:
        return ""  # no peer credentials here: the 0700 directory and 0600 socket still apply
    try:
        _pid, uid, _gid = struct.unpack(
            "3i", conn.getsockopt(socket.SOL_SOCKET, _PEERCRED, struct.calcsize("3i"))
        )
    except OSError:
        return ""
    if uid in (os.getuid(), 0):
        return ""
    return f"refused: uid {uid} is not the owner of this process"


def _remove_stale(directory: Path) -> None:
    """Remove sockets of processes that are gone (one killed by a signal cannot clean up)."""
    for path in directory.glob("*.sock"):
        stem = path.stem
        if not stem.isdigit():
            continue
        try:
            os.kill(int(stem), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                path.unlink()
        except OSError:
            continue
