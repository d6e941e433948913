"""Secrets found by value: what the Scrubber hides, what it leaves alone, and where it is applied.

The property tests run both directions: every spelling of a real secret name (or a value that has
a secret's shape) is hidden, and every spelling of a word that only looks like one is shown.
"""

from __future__ import annotations

import sys
import types
from collections import namedtuple

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from otel_scope.capture import REDACTED, Redactor, Serializer
from otel_scope.capture.redaction import DEFAULT_SECRET_NAMES
from otel_scope.capture.scrubbing import Scrubber
from otel_scope.config import parse_pattern
from otel_scope.targets.planner import Request

SECRET = "Zq8vK2mW9xR4tL7p"  # a marker with no shape of its own: only its position gives it away

# (text, what must disappear) for each kind of secret the issue lists.
FOUND_BY_VALUE = [
    ("postgresql://app:Zq8vK2mW9xR4tL7p@db.internal:5432/shop", SECRET),
    ("https://api.example.com/v1/items?page=2&access_token=Zq8vK2mW9xR4tL7p&x=1", SECRET),
    ("--password=Zq8vK2mW9xR4tL7p", SECRET),
    ("Authorization: Bearer Zq8vK2mW9xR4tL7p", SECRET),
    ("Bearer Zq8vK2mW9xR4tL7p", SECRET),
    ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", "YWxhZGRpbjpvcGVuc2VzYW1l"),
    ('{"client_secret": "Zq8vK2mW9xR4tL7p", "page": 1}', SECRET),
    ("b'api_key': b'Zq8vK2mW9xR4tL7p'", SECRET),
    ("('X-Api-Key', 'Zq8vK2mW9xR4tL7p')", SECRET),
    ("connect failed: dsn: mysql://root:Zq8vK2mW9xR4tL7p@localhost/app", SECRET),
    ("Cookie: theme=dark; sessionid=Zq8vK2mW9xR4tL7p", SECRET),
    ('File "app.py", line 9, in main\n    password = "Zq8vK2mW9xR4tL7p"\n', SECRET),
    ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "eyJhbGci"),
    ("key id AKIAIOSFODNN7EXAMPLE in use", "AKIAIOSFODNN7EXAMPLE"),
    ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSy"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 expired", "ghp_"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_pat_"),
    ("glpat-abcdefghij0123456789", "glpat-"),
    ("xoxb-123456789012-abcdefghijklmn", "xoxb-"),
    ("charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_"),
    ("OPENAI sk-proj-abcdefghijklmnopqrstuvwx", "sk-proj-"),
    ("ya29.a0AfH6SMBabcdefghijklmnopqrstu", "ya29."),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEpAIB"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk (cut)", "b3BlbnNz"),
]

LEFT_ALONE = [
    "session=3f2a key=primary author=alice tokenizer=bpe",
    "SessionTransaction(session=<Session object>)",
    "https://example.com/a/b?page=2&sort=name",
    "git@github.com:org/repo.git",
    "a basic example of the bearer of news",
    "max_tokens: 256, monkey: yes, keyboard: us",
    "if token == expected: return",
    "Deskjet desk-0123456789abcdefghijkl",
    "hello",
    "12:30",
]


@pytest.mark.parametrize(("text", "secret"), FOUND_BY_VALUE)
def test_secret_values_are_hidden_wherever_they_appear_in_a_text(text: str, secret: str) -> None:
    scrubbed = Scrubber().scrub(text)
    assert secret not in scrubbed
    assert REDACTED in scrubbed


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_text_that_only_resembles_a_secret_is_returned_unchanged(text: str) -> None:
    assert Scrubber().scrub(text) is text


def test_the_readable_parts_around_a_secret_are_kept() -> None:
    s = Scrubber()
    assert s.scrub("postgresql://app:pw1@db/shop") == f"postgresql://app:{REDACTED}@db/shop"
    assert s.scrub("/v1?page=2&token=abc&x=1") == f"/v1?page=2&token={REDACTED}&x=1"
    assert s.scrub("('client_secret', 'abc')") == f"('client_secret', '{REDACTED}')"


def test_a_command_line_hides_secret_flags_in_both_spellings() -> None:
    argv = ["app.py", "--password", "s3cr3t-one", "--token=s3cr3t-two", "--verbose", "input.txt"]
    assert Scrubber().argv(argv) == [
        "app.py",
        "--password",
        REDACTED,
        f"--token={REDACTED}",
        "--verbose",
        "input.txt",
    ]


def test_user_redaction_names_apply_to_pairs_in_text() -> None:
    s = Scrubber(Redactor(extra=["customer_email"]))
    assert "bob@example.com" not in s.scrub("customerEmail=bob@example.com")
    assert Scrubber().scrub("customer_email=bob@example.com") == "customer_email=bob@example.com"


# --- property tests: both directions --------------------------------------------------------

SEPARATORS = st.sampled_from(["", "_", "-", ".", " "])


@st.composite
def spelled(draw: st.DrawFn, word: str) -> str:
    """``word`` in a random spelling: any case per letter, separators between letters."""
    out = []
    for i, c in enumerate(word):
        if i:
            out.append(draw(st.sampled_from(["", "", "", "_", "-", "."])))
        out.append(c.upper() if draw(st.booleans()) else c)
    return "".join(out)


REAL_SECRET_NAMES = sorted(
    DEFAULT_SECRET_NAMES
    | {
        "password",
        "passwd",
        "pw",
        "token",
        "apikey",
        "secret",
        "authorization",
        "cookie",
        "dsn",
        "privatekey",
    }
)
LOOK_ALIKES = [
    "session",
    "key",
    "author",
    "authors",
    "authority",
    "tokenizer",
    "tokens",
    "monkey",
    "keyboard",
]
PREFIXES = st.sampled_from(["", "user", "db", "client", "aws", "x", "github", "my", "old", "new"])


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(REAL_SECRET_NAMES))
def test_every_spelling_of_a_real_secret_name_is_secret(data: st.DataObject, name: str) -> None:
    assert Redactor().is_secret(data.draw(spelled(name)))


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    word=st.sampled_from(["password", "passwd", "secret", "apikey", "privatekey", "credential"]),
)
def test_a_name_containing_a_secret_word_is_secret_whatever_surrounds_it(
    data: st.DataObject, word: str
) -> None:
    prefix, sep1, sep2 = data.draw(PREFIXES), data.draw(SEPARATORS), data.draw(SEPARATORS)
    suffix = data.draw(st.sampled_from(["", "hash", "file", "value", "2", "s"]))
    assert Redactor().is_secret(f"{prefix}{sep1}{data.draw(spelled(word))}{sep2}{suffix}")


@settings(max_examples=300, deadline=None)
@given(data=st.data(), word=st.sampled_from(["token", "cookie", "sessionid"]))
def test_a_name_ending_in_a_secret_suffix_is_secret(data: st.DataObject, word: str) -> None:
    assert Redactor().is_secret(f"{data.draw(PREFIXES)}{data.draw(SEPARATORS)}{data.draw(spelled(word))}")


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    stem=st.sampled_from(["session", "key", "author", "token", "monkey"]),
    prefix=st.sampled_from(["", "db", "orm", "scoped", "async", "primary", "sort", "co", "don", "tur"]),
    suffix=st.sampled_from(
        ["", "s", "maker", "factory", "board", "word", "izer", "count", "ity", "chain", "type"]
    ),
)
def test_words_that_only_resemble_a_secret_name_are_not_secret(
    data: st.DataObject, stem: str, prefix: str, suffix: str
) -> None:
    assume(stem != "token" or suffix)  # "...token" is a secret by the suffix rule: not a look-alike
    tail = f"{data.draw(SEPARATORS)}{suffix}" if suffix else ""
    name = f"{prefix}{data.draw(SEPARATORS)}{data.draw(spelled(stem))}{tail}"
    assert not Redactor().is_secret(name), name


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(LOOK_ALIKES))
def test_every_spelling_of_a_look_alike_is_not_secret(data: st.DataObject, name: str) -> None:
    assert not Redactor().is_secret(data.draw(spelled(name)))


VALUES = st.text(
    alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=10, max_size=40
)
TEMPLATES = [
    "{key}={v}",
    "--{key}={v}",
    "https://h.example/p?a=1&{key}={v}&b=2",
    '{{"{key}": "{v}", "n": 1}}',
    "{{'{key}': '{v}'}}",
    "('{key}', '{v}')",
    "{key}: {v}",
    "scheme://user:{v}@host/db",
    "Authorization: Bearer {v}",
    "failed with Bearer {v} at retry",
]


@settings(max_examples=400, deadline=None)
@given(data=st.data(), value=VALUES, template=st.sampled_from(TEMPLATES))
def test_a_secret_value_never_survives_in_any_of_the_text_shapes(
    data: st.DataObject, value: str, template: str
) -> None:
    key = data.draw(
        spelled(data.draw(st.sampled_from(["password", "api_key", "client_secret", "token", "pw", "dsn"])))
    )
    text = f"prefix {template.format(key=key, v=value)} suffix"
    assert value not in Scrubber().scrub(text)


def test_a_secret_looking_value_before_a_comma_does_not_hide_the_next_key() -> None:
    # Found by hypothesis: the value "22222ToKEN" was read as the key of a ('key', 'value') pair.
    text = '{"key": "22222ToKEN", "n": 1} (\'a\', "token", "b")'
    assert Scrubber().scrub(text) == text
    assert Scrubber().scrub("[('token', 'abc'), ('x', 'y')]") == "[('token', '[redacted]'), ('x', 'y')]"


@settings(max_examples=300, deadline=None)
@given(data=st.data(), value=VALUES, template=st.sampled_from(TEMPLATES[:7]))
def test_a_value_under_a_look_alike_key_is_shown(data: st.DataObject, value: str, template: str) -> None:
    key = data.draw(spelled(data.draw(st.sampled_from(LOOK_ALIKES))))
    text = template.format(key=key, v=value)
    assert Scrubber().scrub(text) == text


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(st.sampled_from([*"aeiknoprstuwyAKIBG_ /@.-", "pass", "key", "tok", "eyJ"])).map("".join)
)
def test_the_quick_exit_for_short_text_without_separators_never_changes_the_answer(text: str) -> None:
    assert Scrubber()._scrub(text[:13]) == text[:13]


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(st.sampled_from([*"aeiknoprstuwy_=:,'\" /@.-", "pass", "key", "tok"]), max_size=30).map(
        "".join
    )
)
def test_a_remembered_answer_is_the_answer(text: str) -> None:
    scrubber = Scrubber()
    first = scrubber.scrub(text)
    assert scrubber.scrub(text) == first == scrubber._scrub(text)


# --- the serializer applies it everywhere ---------------------------------------------------

Header = namedtuple("Header", ["name", "value"])


@pytest.mark.parametrize(
    "value",
    [
        {b"password": SECRET},
        [("Authorization", f"Bearer {SECRET}"), ("client_secret", SECRET)],
        [(b"X-Api-Key", SECRET.encode())],
        ("postgresql://u:" + SECRET + "@h/db",),
        ValueError(f"cannot connect to redis://:{SECRET}@cache:6379/0"),
        {"postgresql://u:" + SECRET + "@h/db": 1},
        f"Authorization: Bearer {SECRET}",
        f"x={'y' * 600} token={SECRET}",
        ("a" * 490) + f" token={SECRET}" + ("b" * 2000),
        f"Authorization: Bearer {SECRET}".encode(),
        bytearray(f"password={SECRET}".encode()),
        ["app.py", "--api-key", SECRET, "-v"],
    ],
)
def test_the_serializer_hides_secrets_inside_any_value(value: object) -> None:
    serializer = Serializer()
    text = serializer(value)
    assert SECRET not in text
    assert serializer.redacted >= 1


def test_a_secret_cut_in_half_by_the_length_limit_does_not_leak_its_start() -> None:
    serializer = Serializer(max_length=60)
    text = serializer("x" * 30 + f" password={SECRET}{SECRET}{SECRET}")
    assert SECRET[:6] not in text


def test_an_orm_session_argument_is_shown_not_redacted() -> None:
    class Session:
        def __init__(self) -> None:
            self.bind = "Engine(sqlite:///app.db)"

    serializer = Serializer()
    assert serializer.named("session", Session()) == "Session(bind='Engine(sqlite:///app.db)')"
    assert serializer.redacted == 0


def test_a_runtime_span_counts_the_arguments_hidden_by_name_and_by_value(memory, engine, monkeypatch) -> None:
    module = types.ModuleType("scrub_target")
    exec("def connect(dsn, password, retries):\n    return retries\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "scrub_target", module)
    engine.add(Request(parse_pattern("scrub_target:connect"), mode="runtime"))
    assert module.connect(f"postgresql://u:{SECRET}@h/db", SECRET, 3) == 3
    (span,) = memory.named("scrub_target.connect")
    assert span.attributes["otel_scope.redacted"] == 2
    assert SECRET not in str(dict(span.attributes))
