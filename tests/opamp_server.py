"""A small OpAMP server for tests: the HTTP transport, on 127.0.0.1, with the protocol's own protobufs.

It decodes every ``AgentToServer`` the agent POSTs, keeps it for assertions, and answers with a
``ServerToAgent`` that offers a 1 s heartbeat (so a test waits about a second for a change, not
the 30 s default) and carries the remote config the test set, as a real OpAMP server would: the
same config, with the same hash, on every response until the test changes it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry._opamp.proto import opamp_pb2

HEARTBEAT_S = 1


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest would show every request on failure."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        message = opamp_pb2.AgentToServer()
        try:
            message.ParseFromString(body)
        except Exception:
            self.send_response(HTTPStatus.BAD_REQUEST)
            self.end_headers()
            return
        payload = self.server.opamp._receive(message, self.headers.get("Content-Type", ""))
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, opamp: OpampServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.opamp = opamp


class OpampServer:
    """Records agents' messages and serves the remote config set by :meth:`set_remote_config`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.messages: list[opamp_pb2.AgentToServer] = []
        self.content_types: list[str] = []
        self._remote: opamp_pb2.AgentRemoteConfig | None = None
        self._http = _Server(self)
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1/opamp"

    def __enter__(self) -> OpampServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    def set_remote_config(self, files: dict[str, tuple[str, bytes]]) -> bytes:
        """Serve this config map from now on; returns its hash (what RemoteConfigStatus echoes)."""
        config = opamp_pb2.AgentConfigMap()
        digest = hashlib.sha256()
        for name, (content_type, body) in sorted(files.items()):
            config.config_map[name].content_type = content_type
            config.config_map[name].body = body
            digest.update(name.encode() + b"\0" + content_type.encode() + b"\0" + body + b"\0")
        remote = opamp_pb2.AgentRemoteConfig(config=config, config_hash=digest.digest())
        with self._lock:
            self._remote = remote
        return remote.config_hash

    def _receive(self, message: opamp_pb2.AgentToServer, content_type: str) -> bytes:
        with self._arrived:
            self.messages.append(message)
            self.content_types.append(content_type)
            self._arrived.notify_all()
            remote = self._remote
        reply = opamp_pb2.ServerToAgent(instance_uid=message.instance_uid)
        reply.connection_settings.opamp.heartbeat_interval_seconds = HEARTBEAT_S
        if remote is not None and not message.HasField("agent_disconnect"):
            reply.remote_config.CopyFrom(remote)
        return reply.SerializeToString()

    def wait_for(
        self, predicate: Callable[[list[opamp_pb2.AgentToServer]], Any], timeout: float = 30.0
    ) -> list[opamp_pb2.AgentToServer]:
        """Wait until ``predicate(messages)`` is truthy; returns the messages."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(list(self.messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"OpampServer: condition not met in {timeout:g}s; got {len(self.messages)} messages"
                    )
                self._arrived.wait(min(remaining, 0.25))
            return list(self.messages)


def attributes(pairs: Any) -> dict[str, Any]:
    """An AgentDescription's KeyValue list as a plain dict."""
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in pairs}


def statuses(messages: list[opamp_pb2.AgentToServer], config_hash: bytes) -> list[tuple[str, str]]:
    """(status name, error message) of every RemoteConfigStatus reported for ``config_hash``."""
    return [
        (
            opamp_pb2.RemoteConfigStatuses.Name(m.remote_config_status.status),
            m.remote_config_status.error_message,
        )
        for m in messages
        if m.HasField("remote_config_status")
        and m.remote_config_status.last_remote_config_hash == config_hash
    ]
