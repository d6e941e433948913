"""Fleet control over OpAMP: a program under ``opentelemetry-instrument`` reports itself to a test
OpAMP server on 127.0.0.1 and applies the scope settings it sends, with spans over real OTLP.

Plus the remote config format in-process: what is accepted, and that a config that cannot be
applied changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry._opamp", reason="needs the opamp extra: pip install 'otel-scope[opamp]'")

from live_app import LiveApp, item_count, plain_output
from opamp_server import OpampServer, attributes, statuses
from otel_scope.config import Settings
from otel_scope.control.opamp import RemoteConfigError, RemoteTargets, parse_remote_config
from otel_scope.engine import Engine
from sdk import installed_provider

APPS = Path(__file__).resolve().parent / "apps"
JSON = "application/json"


def _json(config: dict) -> dict[str, tuple[str, bytes]]:
    return {"otel-scope.json": (JSON, json.dumps(config).encode())}


def _effective(message) -> dict:
    return json.loads(message.effective_config.config_map.config_map["otel-scope.json"].body)


@pytest.fixture
def opamp_server() -> Iterator[OpampServer]:
    with OpampServer() as server:
        yield server


# -- the format, in-process ----------------------------------------------------------------------
def test_remote_config_in_json_or_toml_gives_the_scope_settings() -> None:
    from_json = parse_remote_config(
        _json({"targets": ["a.b:f", "a.b:g"], "locals": "a.b:h,a.c", "level": "lines", "mode": "hybrid"})
    )
    toml = b'targets = ["a.b:f", "a.b:g"]\nlocals = ["a.b:h", "a.c"]\nlevel = "lines"\nmode = "hybrid"\n'
    from_toml = parse_remote_config({"otel-scope.toml": ("application/toml", toml)})
    expected = {"targets": ["a.b:f", "a.b:g"], "locals": ["a.b:h", "a.c"], "level": "lines", "mode": "hybrid"}
    assert from_json == from_toml == expected
    assert parse_remote_config({}) == {"targets": [], "locals": [], "level": None, "mode": "auto"}
    assert parse_remote_config({"otel-scope.json": ("", b"{}")})["targets"] == []  # no content type: by name


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"collector.yaml": ("text/yaml", b"x: 1")}, "no otel-scope.json or otel-scope.toml entry"),
        (_json({"targets": ["a:f"], "local": ["a:g"]}), "unknown key(s) local; accepted: targets, locals"),
        (_json({"level": "all"}), "level 'all' is not valid"),
        (_json({"mode": "off"}), "mode 'off' is not valid"),
        (_json({"targets": [1]}), "targets must be a list of target patterns"),
        ({"otel-scope.json": (JSON, b"{nope")}, "otel-scope.json is not valid JSON"),
        ({"otel-scope.json": ("text/yaml", b"{}")}, "content type 'text/yaml'"),
        ({**_json({}), "otel-scope.toml": ("application/toml", b"")}, "send one"),
        (_json(["a:f"]), "must hold an object"),
    ],
)
def test_a_remote_config_otel_scope_cannot_read_fails_with_the_reason(files, reason) -> None:
    with pytest.raises(RemoteConfigError) as info:
        parse_remote_config(files)
    assert reason in str(info.value)


def test_remote_targets_replace_each_other_and_a_failing_config_changes_nothing(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(APPS))
    import liveshop

    with installed_provider():
        engine = Engine(Settings())
        remote = RemoteTargets(lambda: engine)
        try:
            remote.apply(parse_remote_config(_json({"targets": ["liveshop:check"]})))
            assert [r["function"] for r in engine.active()] == ["liveshop.check"]
            with pytest.raises(RemoteConfigError, match="accepted forms"):
                remote.apply(parse_remote_config(_json({"targets": ["liveshop:price", "not a pattern"]})))
            assert [r["function"] for r in engine.active()] == ["liveshop.check"]
            remote.apply(
                parse_remote_config(_json({"targets": ["liveshop:price"], "locals": ["liveshop:price"]}))
            )
            assert [(r["function"], r["mechanism"]) for r in engine.active()] == [
                ("liveshop.price", "hybrid")
            ]
            assert liveshop.price(liveshop.make_order(5)) == 67.5
            remote.apply(parse_remote_config({}))
            assert engine.active() == [] and engine.entries() == []
        finally:
            engine.remove_all()


# -- end to end ---------------------------------------------------------------------------------------
def test_the_opamp_server_sees_the_process_and_its_remote_config_changes_what_is_traced(
    otlp_receiver, opamp_server, tmp_path: Path
) -> None:
    env = {
        **otlp_receiver.env("grpc"),
        "OTEL_SCOPE_OPAMP_ENDPOINT": opamp_server.endpoint,
        "OTEL_SERVICE_NAME": "shop",
    }
    app = LiveApp(tmp_path, env)
    try:
        app.wait_ready()
        first = opamp_server.wait_for(lambda m: any(x.HasField("agent_description") for x in m))[0]
        assert opamp_server.content_types[0] == "application/x-protobuf"
        identifying = attributes(first.agent_description.identifying_attributes)
        described = attributes(first.agent_description.non_identifying_attributes)
        assert identifying["service.name"] == "shop"
        assert described["telemetry.distro.name"] == "otel-scope" and described["process.pid"] == app.pid
        effective = _effective(first)
        assert effective["mode"] == "auto" and effective["environment"] == "development"
        assert effective["targets"] == [] and effective["remote"] is None

        # a remote config: a runtime target and compile-time locals
        config = {"targets": ["liveshop:check"], "locals": ["liveshop:price"], "level": "locals"}
        sent = time.monotonic()
        good = opamp_server.set_remote_config(_json(config))
        messages = opamp_server.wait_for(lambda m: statuses(m, good))
        applied_after = time.monotonic() - sent
        assert statuses(messages, good)[0] == ("RemoteConfigStatuses_APPLIED", "")
        reported = _effective([m for m in messages if m.HasField("effective_config")][-1])
        assert reported["remote"] == {**config, "mode": "auto"}
        assert {
            (t["pattern"], t["source"], t["functions"][0])
            for t in reported["targets"]
            if t["source"] == "opamp"
        } == {
            ("liveshop:check", "opamp", "liveshop.check"),
            ("liveshop:price", "opamp", "liveshop.price"),
        }
        spans = otlp_receiver.wait_for(
            lambda s: (
                any(x.name == "liveshop.price" and x.events_named("otel_scope.locals") for x in s)
                and any(x.name == "liveshop.check" for x in s)
            )
        )
        price = next(x for x in spans if x.name == "liveshop.price")
        assert (
            price.attributes["otel_scope.mechanism"] == "compile_time"
        )  # locals only: no runtime span asked

        # a config that cannot be applied: FAILED with the reason, the previous one stays
        bad = opamp_server.set_remote_config(_json({"targets": ["liveshop:check", "liveshop:price@0"]}))
        messages = opamp_server.wait_for(lambda m: statuses(m, bad))
        status, reason = statuses(messages, bad)[0]
        assert (
            status == "RemoteConfigStatuses_FAILED"
            and "liveshop:price@0" in reason
            and "accepted forms" in reason
        )
        listed = app.targets("list")
        assert "liveshop:check  opamp" in listed.stdout and "liveshop:price  opamp" in listed.stdout

        # an empty config: no remote targets, spans stop
        empty = opamp_server.set_remote_config({})
        opamp_server.wait_for(lambda m: statuses(m, empty) == [("RemoteConfigStatuses_APPLIED", "")])
        stopped = time.time_ns()
        time.sleep(1.5)
        late = [
            s for s in otlp_receiver.spans() if s.name.startswith("liveshop.") and s.start_time_ns > stopped
        ]
        assert late == []
        traced = app.finish()
    finally:
        app.kill()
    # one heartbeat (1 s offered) plus applying, with room for a loaded machine: the default
    # heartbeat (30 s) would be far past this
    assert applied_after < 10.0, applied_after
    plain = plain_output(item_count(traced.stdout), tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    assert traced.stderr_without_session_line == ""
    assert opamp_server.messages[-1].HasField("agent_disconnect")


def test_an_unreachable_opamp_server_costs_one_line_and_nothing_else(otlp_receiver, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**otlp_receiver.env("grpc"), "OTEL_SCOPE_OPAMP_ENDPOINT": f"http://127.0.0.1:{port}/v1/opamp"}
    app = LiveApp(tmp_path, env)
    try:
        app.wait_ready()
        time.sleep(1.0)
        traced = app.finish()
    finally:
        app.kill()
    plain = plain_output(item_count(traced.stdout), tmp_path)
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout)
    extra = traced.stderr_without_session_line.splitlines()
    assert len(extra) == 1 and "OpAMP server" in extra[0] and "not reachable" in extra[0], traced.stderr
