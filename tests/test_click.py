"""otel-scope over a real click app: the commands' functions live in ``Command.callback``.

``@click.command()`` and ``@group.command()`` leave a ``click.Command`` at the module attribute
and keep the function in its ``callback``, which click calls itself: a runtime wildcard over the
app's module found no function there and gave the commands no span, and said nothing.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from scope_run import run_instrumented, run_plain, stored_trace
from sdk import add_target

COMMANDS = "clickapp.commands"


@pytest.mark.parametrize(
    "flags",
    [
        ["--scope-mode", "runtime", "--scope-targets", "clickapp.*"],
        ["--scope-mode", "hybrid", "--scope-targets", "clickapp.*", "--scope-locals", "clickapp.*"],
    ],
    ids=["runtime", "hybrid"],
)
def test_click_command_callbacks_under_a_wildcard_get_one_span_per_call(
    tmp_path: Path, flags: list[str]
) -> None:
    """The group's callback and the subcommand's (``@pass_context`` around it) each get one
    span with their arguments, through the real ``opentelemetry-instrument`` CLI (in hybrid,
    with the callback's locals on that same span); the program's output and exit are those of
    the run without otel-scope."""
    argv = ["--verbose", "total", "1", "2", "3"]
    plain = run_plain("app_click.py", tmp_path, argv=argv)
    env = {"OTEL_TRACES_EXPORTER": "otel_scope", "OTEL_SCOPE_CONTROL": "false"}
    traced = run_instrumented("app_click.py", flags, env, tmp_path, argv=argv)
    expected = (0, "total 6 verbose=True\n")
    assert (traced.returncode, traced.stdout) == (plain.returncode, plain.stdout) == expected
    assert traced.stderr_without_session_line == "", traced.stderr
    spans = [s for s in stored_trace(tmp_path, traced).spans if s.name.startswith(COMMANDS)]
    assert sorted(s.name for s in spans) == [f"{COMMANDS}.cli", f"{COMMANDS}.total"]
    total = next(s for s in spans if s.name.endswith(".total"))
    assert total.attributes["otel_scope.arg.numbers"] == "(1, 2, 3)"
    assert total.attributes["otel_scope.mechanism"] == "runtime"
    values = [e.attributes["otel_scope.var.result"] for e in total.events if e.name == "otel_scope.locals"]
    assert values == (["6"] if "hybrid" in flags else [])


def test_a_click_command_named_exactly_is_traced_through_its_callback(memory, runtime_engine) -> None:
    """flask's ``routes`` command: ``flask.cli:routes_command`` names a ``Command``; its
    function (``@with_appcontext`` around it) is what gets the span, and the name still holds
    the very ``Command`` click and flask registered."""
    import click
    import flask.cli

    command = vars(flask.cli)["routes_command"]
    handle = add_target(runtime_engine, "flask.cli:routes_command")
    try:
        assert handle.problem == "" and handle.functions == ["flask.cli.routes_command"]
        assert vars(flask.cli)["routes_command"] is command and type(command) is click.Command
        group = flask.cli.FlaskGroup(create_app=lambda: flask.Flask("clicktest"))
        group.main(["routes"], prog_name="flask", standalone_mode=False)
    finally:
        handle.remove()
    assert [s.name for s in memory.named("routes_command")] == ["flask.cli.routes_command"]


def test_a_click_callback_no_trampoline_fits_is_refused_in_one_line(
    runtime_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An async generator as a command's callback cannot get a code trampoline, and a wrapper at
    the attribute would reach no call (click calls the callback itself): one line says so, and
    the ``Command`` is left as it was."""
    (tmp_path / "agen_cli.py").write_text(
        textwrap.dedent(
            """
            import click

            @click.command()
            async def stream():
                yield 1
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import agen_cli  # type: ignore[import-not-found]

    command = agen_cli.stream
    try:
        handle = add_target(runtime_engine, "agen_cli:stream")
        assert handle.functions == []
        assert handle.problem == (
            "agen_cli.stream: ValueError: held by a click.core.Command object, which calls it itself, "
            "and an async generator (its asend/athrow cannot be forwarded by a trampoline): "
            "no runtime span reaches it"
        )
        assert vars(agen_cli)["stream"] is command
    finally:
        sys.modules.pop("agen_cli", None)
