"""One validated settings model, loaded from flags, environment and pyproject.

Precedence: ``opentelemetry-instrument`` flag > ``OTEL_SCOPE_*`` environment variable >
``[tool.otel-scope]`` in ``pyproject.toml`` of the working directory (or the TOML file named by
``OTEL_SCOPE_CONFIG``) > default. The stock CLI turns flags into environment variables before it
starts the program, so inside the process the first two are one source.

Validation happens once, here. A bad value raises :class:`ConfigError`, whose message is one line
naming the setting, the bad value and what is accepted; callers print it and keep otel-scope off.
"""

from __future__ import annotations

import dataclasses
import os
import string
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_scope.config import environment_variables as ev
from otel_scope.config.patterns import PatternError, TargetPattern, parse_patterns
from otel_scope.vocabulary import LEVELS, MODES, SESSION_KINDS

ENVIRONMENTS = ("development", "production")
SESSIONS = SESSION_KINDS
ESCALATION = ("auto", "on", "off")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting with a value otel-scope does not accept."""

    def __init__(self, setting: str, value: object, accepted: str, source: str = "") -> None:
        self.setting, self.value, self.accepted, self.source = setting, value, accepted, source
        super().__init__(f"{setting}={_shown(value)} is not valid; {accepted}")


_SHOWN = 200  # characters of a bad value an error message repeats: enough to recognise it


def _shown(value: object) -> str:
    """``repr(value)`` cut to about 200 characters (a value can be megabytes, or nested 5,000 deep)."""
    try:
        return _cut(repr(value))
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply>"


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}…(+{len(text) - _SHOWN} chars)"


def _default_store_path() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "otel-scope", "traces.sqlite3")


def _default_environment(environ: Mapping[str, str]) -> str:
    # OTEL_RESOURCE_ATTRIBUTES may carry deployment.environment.name (or the older
    # deployment.environment); "prod"/"production" select production, anything else development.
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = item.partition("=")
        if key.strip() in ("deployment.environment.name", "deployment.environment"):
            return "production" if value.strip().lower() in ("prod", "production") else "development"
    return "development"


@dataclass(frozen=True)
class Settings:
    """Everything otel-scope can be told; see the README's settings table."""

    mode: str = "auto"
    targets: tuple[TargetPattern, ...] = ()
    locals: tuple[TargetPattern, ...] = ()
    level: str = "locals"
    state: tuple[TargetPattern, ...] = ()
    exclude: tuple[TargetPattern, ...] = ()
    environment: str = "development"
    session: str = "process"
    capture_args: bool = True
    capture_return: bool = True
    user_repr: bool = False
    max_value_length: int = 512
    max_depth: int = 2
    max_items: int = 20
    redact: tuple[str, ...] = ()
    redact_exclude: tuple[str, ...] = ()
    rate_limit: float = 0.0  # runtime spans per second per function; 0 = unlimited
    capture_rate_limit: float = 0.0  # compile-time captured calls per second per function
    max_events: int = 100  # compile-time events per span (the SDK keeps at most 128)
    loop_sample: int = 5  # per capture point: keep the first N and the last N hits
    call_sampling: bool = True  # per-function call sampling for functions not named exactly
    call_sample_first: int = 5  # keep the first N calls of every function in full
    call_sample_rate: float = 10.0  # then at most this many calls per second per function
    overhead_budget: float = 0.1  # share of the run kept calls may cost; adapts the rate (0: fixed)
    production_compile_time: bool = False
    ui_url: str = "http://localhost:16686/trace/{trace_id}"
    store_path: str = field(default_factory=_default_store_path)
    store_max_age_days: float = 7.0
    store_max_mb: float = 200.0
    escalation: str = "auto"
    control: bool = True
    opamp_endpoint: str = ""
    messages: bool = True

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (values already validated by the caller)."""
        return dataclasses.replace(self, **changes)


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower().replace("-", "_")
        if v not in choices:
            raise ValueError("accepted: " + ", ".join(choices))
        return v

    return parse


def _bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("accepted: true or false (also 1/0, yes/no, on/off)")


def _number(kind: type, minimum: float, maximum: float | None = None) -> Callable[[str], Any]:
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    accepted = f"accepted: a {'whole ' if kind is int else ''}number {bounds}"

    def parse(value: str) -> Any:
        try:
            number = kind(str(value).strip())
        except ValueError:
            raise ValueError(accepted) from None
        if number < minimum or (maximum is not None and number > maximum) or number != number:
            raise ValueError(accepted)
        return number

    return parse


def _patterns(value: str) -> tuple[TargetPattern, ...]:
    try:
        return parse_patterns(value)
    except PatternError as exc:
        raise ValueError(str(exc)) from None


def _names(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _url_template(value: str) -> str:
    """A URL with ``{trace_id}`` and no other field: it is formatted at exit, where an error
    would lose the closing line and a width spec (``{trace_id:>20000000}``) would print megabytes."""
    accepted = "accepted: a URL containing {trace_id} and no other {field} or format spec ({{ for a brace)"
    try:
        fields = [
            (name, spec, conv) for _, name, spec, conv in string.Formatter().parse(value) if name is not None
        ]
    except ValueError:
        raise ValueError(accepted) from None
    if not fields or any(f != ("trace_id", "", None) for f in fields):
        raise ValueError(accepted)
    return value.strip()


def _path(value: str) -> str:
    """``~`` and ``~user`` expanded; an unknown user is refused rather than taken literally
    (which would create a folder named ``~nosuchuser`` in the working directory)."""
    path = os.path.expanduser(value.strip())
    if path.startswith("~"):
        raise ValueError("accepted: a path; ~ and ~user only for an existing user")
    return path


# name -> (environment variable, parser). The pyproject key is the field name (with '-' or '_').
_SPEC: dict[str, tuple[str, Callable[[str], Any]]] = {
    "mode": (ev.OTEL_SCOPE_MODE, _choice(MODES)),
    "targets": (ev.OTEL_SCOPE_TARGETS, _patterns),
    "locals": (ev.OTEL_SCOPE_LOCALS, _patterns),
    "level": (ev.OTEL_SCOPE_LEVEL, _choice(LEVELS)),
    "state": (ev.OTEL_SCOPE_STATE, _patterns),
    "exclude": (ev.OTEL_SCOPE_EXCLUDE, _patterns),
    "environment": (ev.OTEL_SCOPE_ENVIRONMENT, _choice(ENVIRONMENTS)),
    "session": (ev.OTEL_SCOPE_SESSION, _choice(SESSIONS)),
    "capture_args": (ev.OTEL_SCOPE_CAPTURE_ARGS, _bool),
    "capture_return": (ev.OTEL_SCOPE_CAPTURE_RETURN, _bool),
    "user_repr": (ev.OTEL_SCOPE_USER_REPR, _bool),
    "max_value_length": (ev.OTEL_SCOPE_MAX_VALUE_LENGTH, _number(int, 16)),
    "max_depth": (ev.OTEL_SCOPE_MAX_DEPTH, _number(int, 0)),
    "max_items": (ev.OTEL_SCOPE_MAX_ITEMS, _number(int, 1)),
    "redact": (ev.OTEL_SCOPE_REDACT, _names),
    "redact_exclude": (ev.OTEL_SCOPE_REDACT_EXCLUDE, _names),
    "rate_limit": (ev.OTEL_SCOPE_RATE_LIMIT, _number(float, 0)),
    "capture_rate_limit": (ev.OTEL_SCOPE_CAPTURE_RATE_LIMIT, _number(float, 0)),
    "max_events": (ev.OTEL_SCOPE_MAX_EVENTS, _number(int, 1)),
    "loop_sample": (ev.OTEL_SCOPE_LOOP_SAMPLE, _number(int, 1)),
    "call_sampling": (ev.OTEL_SCOPE_CALL_SAMPLING, _bool),
    "call_sample_first": (ev.OTEL_SCOPE_CALL_SAMPLE_FIRST, _number(int, 0)),
    "call_sample_rate": (ev.OTEL_SCOPE_CALL_SAMPLE_RATE, _number(float, 0)),
    "overhead_budget": (ev.OTEL_SCOPE_OVERHEAD_BUDGET, _number(float, 0, 1)),
    "production_compile_time": (ev.OTEL_SCOPE_PRODUCTION_COMPILE_TIME, _bool),
    "ui_url": (ev.OTEL_SCOPE_UI_URL, _url_template),
    "store_path": (ev.OTEL_SCOPE_STORE_PATH, _path),
    "store_max_age_days": (ev.OTEL_SCOPE_STORE_MAX_AGE_DAYS, _number(float, 0)),
    "store_max_mb": (ev.OTEL_SCOPE_STORE_MAX_MB, _number(float, 1)),
    "escalation": (ev.OTEL_SCOPE_ESCALATION, _choice(ESCALATION)),
    "control": (ev.OTEL_SCOPE_CONTROL, _bool),
    "opamp_endpoint": (ev.OTEL_SCOPE_OPAMP_ENDPOINT, str.strip),
    "messages": (ev.OTEL_SCOPE_MESSAGES, _bool),
}

SETTING_NAMES = tuple(_SPEC)


def flag_for(name: str) -> str:
    """The ``opentelemetry-instrument`` flag users type for setting ``name``."""
    return "--scope-" + name.replace("_", "-")


def env_var_for(name: str) -> str:
    return _SPEC[name][0]


def _read_pyproject(environ: Mapping[str, str], cwd: str) -> tuple[dict[str, Any], str]:
    explicit = environ.get(ev.OTEL_SCOPE_CONFIG)
    path = Path(explicit) if explicit else Path(cwd) / "pyproject.toml"
    if not path.is_file():
        if explicit:
            raise ConfigError(ev.OTEL_SCOPE_CONFIG, explicit, "accepted: the path of a readable TOML file")
        return {}, ""
    # Imported here: most runs read no TOML file, and the parser is a tenth of this module's cost.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "<file>", f"accepted: valid TOML in UTF-8 ({_cut(str(exc))})") from None
    except RecursionError:
        raise ConfigError(
            str(path), "<file>", "accepted: valid TOML (arrays or tables nested too deeply)"
        ) from None
    tool = data.get("tool", {}) if not (explicit and "tool" not in data) else None
    if tool is not None and not isinstance(tool, dict):
        raise ConfigError(f"tool in {path}", tool, "accepted: a table ([tool.otel-scope] ...)")
    table = data if tool is None else tool.get("otel-scope", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.otel-scope] in {path}", table, "accepted: a table")
    return table, str(path)


def load_settings(
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the effective :class:`Settings`, validating every value once.

    ``overrides`` (already typed values, e.g. from ``otel-scope plan`` flags) win over everything.
    """
    environ = os.environ if environ is None else environ
    table, toml_path = _read_pyproject(environ, cwd or os.getcwd())
    values: dict[str, Any] = {}
    for key, raw in table.items():
        name = key.replace("-", "_")
        if name not in _SPEC:
            raise ConfigError(
                f"[tool.otel-scope] {key} in {toml_path}", raw, "accepted keys: " + ", ".join(_SPEC)
            )
        source = f"[tool.otel-scope] {key} in {toml_path}"
        if isinstance(raw, list) and not all(isinstance(item, str | int | float | bool) for item in raw):
            raise ConfigError(source, raw, "accepted: a value, or a list of plain values")
        text = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        values[name] = _parse(name, text, source)
    for name, (var, _parser) in _SPEC.items():
        if var in environ and environ[var].strip() != "":
            values[name] = _parse(name, environ[var], f"{flag_for(name)} / {var}")
    if "environment" not in values:
        values["environment"] = _default_environment(environ)
    values.update(overrides or {})
    return Settings(**values)


def _parse(name: str, text: str, source: str) -> Any:
    try:
        return _SPEC[name][1](text)
    except ValueError as exc:
        raise ConfigError(source, text, str(exc)) from None
