"""The control socket under hostile or careless clients: slow senders, deep JSON, wrong types,
bursts of connects. Each gets a reply or a bounded wait; no client can lock the others out."""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_scope.control import server as server_module
from otel_scope.control.commands import Controller
from otel_scope.control.server import MAX_CLIENTS, ControlServer
from otel_scope.engine import Engine
from test_control_channel import Conn, runtime_dir, shop  # noqa: F401 - fixtures

DEADLINE_S = 1.0


@pytest.fixture
def fast_server(
    engine: Engine,
    runtime_dir: Path,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ControlServer]:
    """A server whose per-request deadline is 1 s instead of 10, so the test stays short."""
    monkeypatch.setattr(server_module, "REQUEST_DEADLINE_S", DEADLINE_S)
    s = ControlServer(Controller(engine.settings, engine=lambda: engine).handle)
    s.start()
    yield s
    s.stop()


def test_clients_trickling_bytes_cannot_keep_every_slot(fast_server: ControlServer) -> None:
    slow = [Conn(fast_server.path) for _ in range(MAX_CLIENTS)]
    stop = threading.Event()

    def trickle(conn: Conn) -> None:
        for byte in b'{"op": "list"' * 100:
            if stop.is_set():
                return
            try:
                conn.sock.sendall(bytes([byte]))
            except OSError:
                return  # closed by the server: the deadline passed
            time.sleep(0.2)

    threads = [threading.Thread(target=trickle, args=(c,), daemon=True) for c in slow]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        assert "busy" in Conn(fast_server.path).read()["error"]  # every slot is taken now...
        late = slow[0].read()
        assert late["ok"] is False and "not completed within 1 s" in late["error"]
        for _ in range(40):  # ...and freed once each slow request misses its deadline
            try:
                reply = Conn(fast_server.path).ask({"op": "list"})
            except (EOFError, ConnectionError):
                reply = {"ok": False}
            if reply["ok"]:
                break
            time.sleep(0.1)
        assert reply["ok"] is True
    finally:
        stop.set()
        for conn in slow:
            conn.close()


def test_a_request_sent_in_pieces_within_the_deadline_is_served(fast_server: ControlServer) -> None:
    conn = Conn(fast_server.path)
    for piece in (b'{"op": ', b'"list"', b"}\n"):
        conn.sock.sendall(piece)
        time.sleep(0.1)
    assert conn.read()["ok"] is True
    time.sleep(DEADLINE_S * 0.6)  # each request gets its own deadline, counted from the last reply
    assert conn.ask({"op": "list"})["ok"] is True
    conn.close()


def test_json_nested_too_deeply_gets_a_reply_and_the_connection_keeps_serving(fast_server) -> None:
    conn = Conn(fast_server.path)
    reply = conn.ask(b"[" * 30_000 + b"]" * 30_000 + b"\n")
    assert reply == {"ok": False, "error": "malformed request: JSON nested too deeply"}
    deep_value = {"op": "list", "id": json.loads("[" * 900 + "]" * 900)}
    assert conn.ask(deep_value)["ok"] is True
    assert conn.ask({"op": "list"})["ok"] is True
    conn.close()


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            {"op": "add", "patterns": ["liveshop:price"], "mode": []},
            "mode [] is not valid; accepted: auto, runtime",
        ),
        ({"op": "add", "patterns": ["liveshop:price"], "mode": ""}, "mode='' is not valid"),
        ({"op": "add", "patterns": ["liveshop:price"], "mode": 5}, "mode 5 is not valid"),
        ({"op": "add", "patterns": ["liveshop:price"], "level": ["locals"]}, "level ['locals'] is not valid"),
        ({"op": ["list"]}, "unknown op ['list']; accepted: list, add, remove"),
        ({"op": "x" * 5000}, "…(+"),
    ],
)
def test_every_field_is_type_checked_and_errors_never_echo_a_whole_value(
    fast_server: ControlServer,
    shop,  # noqa: F811 - the fixture imported above
    request_: dict,
    expected: str,
) -> None:
    reply = Conn(fast_server.path).ask(request_)
    assert reply["ok"] is False and expected in reply["error"], reply
    assert len(reply["error"]) < 400
    assert shop.price.__class__.__name__ == "function"  # nothing was applied


def test_a_burst_of_simultaneous_connects_is_queued_not_refused(fast_server: ControlServer) -> None:
    socks = []
    refused = 0
    for _ in range(200):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)  # a full backlog shows as EAGAIN at once instead of a wait
        code = s.connect_ex(str(fast_server.path))
        if code in (errno.EAGAIN, errno.ECONNREFUSED):
            refused += 1
            s.close()
        else:
            socks.append(s)
    answered = 0
    for s in socks:
        s.setblocking(True)
        s.settimeout(10)
        try:
            s.sendall(b'{"op": "list"}\n')
            if s.recv(65536).startswith(b'{"ok":'):
                answered += 1  # served, or told to retry: either way, a reply
        except OSError:
            pass  # turned away as busy before our send: the reply may be lost to the reset
        finally:
            s.close()
    assert refused == 0
    assert answered >= MAX_CLIENTS
