"""The client side of the control socket: one request to process ``pid``, one reply.

Every way this can fail (no such process, a process without otel-scope, a socket left by a dead
process, another user's process, no answer) becomes a :class:`ControlError` whose message says
which, and what to do, in one line.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from otel_scope.control.paths import candidate_dirs, find_socket
from otel_scope.control.server import encode

DEFAULT_TIMEOUT_S = 10.0


class ControlError(Exception):
    """The request could not be delivered or answered."""


def send(pid: int, message: dict[str, Any], timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Send ``message`` to the control socket of process ``pid`` and return its decoded reply."""
    path = find_socket(pid)
    if path is None:
        if not _alive(pid):
            raise ControlError(f"no process with pid {pid}")
        where = " or ".join(str(d) for d in candidate_dirs())
        raise ControlError(
            f"process {pid} has no otel-scope control socket in {where}: run it under "
            "opentelemetry-instrument with otel-scope on (and OTEL_SCOPE_CONTROL not false), as this user"
        )
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(encode(message))
            reply = _read_line(sock)
    except ConnectionRefusedError:
        raise ControlError(f"{path} does not answer: process {pid} has probably exited") from None
    except PermissionError:
        raise ControlError(
            f"{path} belongs to another user; only the process's own user can control it"
        ) from None
    except TimeoutError:
        raise ControlError(f"process {pid} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to process {pid} through {path}: {exc}") from None
    try:
        decoded = json.loads(reply)
    except ValueError:
        raise ControlError(f"process {pid} answered something that is not JSON: {reply[:200]!r}") from None
    if not isinstance(decoded, dict):
        raise ControlError(f"process {pid} answered {decoded!r} instead of a JSON object")
    return decoded


def _read_line(sock: socket.socket) -> bytes:
    buffer = b""
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            if not buffer:
                raise OSError("the connection closed without a reply")
            break
        buffer += chunk
    return buffer.split(b"\n", 1)[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
