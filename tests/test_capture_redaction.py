"""Which names the Redactor treats as secrets, and how the serializer applies it."""

from __future__ import annotations

import pytest

from otel_scope.capture import REDACTED, Redactor, Serializer
from otel_scope.config import Settings


@pytest.mark.parametrize(
    "name",
    ["api_key", "API-Key", "X-Api-Key", "apiKey", "api.key", "$api_key", "@Password", "Authorization", "ssn"],
)
def test_spellings_of_a_secret_name_normalise_to_the_same_name(name: str) -> None:
    assert Redactor().is_secret(name)


@pytest.mark.parametrize(
    "name",
    ["user_password", "client_secret", "AWS_SECRET_ACCESS_KEY", "db_credentials", "Proxy-Authorization"],
)
def test_names_containing_a_secret_word_are_secret(name: str) -> None:
    assert Redactor().is_secret(name)


@pytest.mark.parametrize(
    "name", ["access_token", "X-Auth-Token", "github_token", "session_cookie", "userSessionId"]
)
def test_names_ending_in_a_secret_suffix_are_secret(name: str) -> None:
    assert Redactor().is_secret(name)


@pytest.mark.parametrize(
    "name",
    [
        "author",
        "authors",
        "authority",
        "secretary",
        "max_tokens",
        "tokenizer",
        "token_count",
        "monkey",
        "pin",
    ],
)
def test_ordinary_words_that_resemble_secret_names_are_not_secret(name: str) -> None:
    assert not Redactor().is_secret(name)


def test_extra_names_are_secret_in_any_spelling() -> None:
    redactor = Redactor(extra=["customer_email"])
    assert redactor.is_secret("Customer-Email")
    assert not Redactor().is_secret("customer_email")


def test_exclude_removes_a_default_name_but_not_the_rules_for_longer_names() -> None:
    redactor = Redactor(exclude=["Token"])
    assert not redactor.is_secret("token")
    assert redactor.is_secret("access_token")


def test_the_answer_for_a_name_does_not_change_when_it_is_asked_again() -> None:
    redactor = Redactor()
    assert [redactor.is_secret("password") for _ in range(3)] == [True, True, True]
    assert [redactor.is_secret("username") for _ in range(3)] == [False, False, False]


def test_a_str_subclass_name_is_checked_without_calling_its_methods() -> None:
    calls: list[str] = []

    class Name(str):
        def lower(self) -> str:
            calls.append("lower")
            return "x"

        def __hash__(self) -> int:
            calls.append("hash")
            return 0

    assert Redactor().is_secret(Name("Password"))
    assert calls == []


def test_serializer_redacts_named_values_and_counts_them() -> None:
    serializer = Serializer()
    assert serializer.named("password", "hunter2") == REDACTED
    assert serializer.named("user", "ada") == "'ada'"
    assert serializer.redacted == 1


def test_serializer_redacts_secret_dict_keys_at_any_depth() -> None:
    serializer = Serializer()
    text = serializer({"user": "ada", "headers": {"Authorization": "Bearer abc", "Accept": "*/*"}})
    assert text == "{'user': 'ada', 'headers': {'Authorization': [redacted], 'Accept': '*/*'}}"
    assert "abc" not in text
    assert serializer.redacted == 1


def test_serializer_redacts_secret_object_fields() -> None:
    class Account:
        def __init__(self) -> None:
            self.name = "ada"
            self.api_key = "k-123"

    serializer = Serializer()
    assert serializer(Account()) == "Account(name='ada', api_key=[redacted])"
    assert serializer.redacted == 1


def test_serializer_redacts_slot_fields_and_namedtuple_fields() -> None:
    import collections

    class Login:
        __slots__ = ("password", "user")

        def __init__(self) -> None:
            self.user, self.password = "ada", "pw"

    Creds = collections.namedtuple("Creds", "user secret")
    serializer = Serializer()
    assert serializer(Login()) == "Login(password=[redacted], user='ada')"
    assert serializer(Creds("ada", "s3")) == "Creds(user='ada', secret=[redacted])"
    assert serializer.redacted == 2


def test_serializer_redacts_str_subclass_keys_by_their_plain_text() -> None:
    import enum

    class Field(str, enum.Enum):
        PASSWORD = "password"

    serializer = Serializer()
    assert "pw" not in serializer({Field.PASSWORD: "pw"})
    assert serializer.redacted == 1


def test_redaction_counter_can_be_read_as_a_difference_or_reset() -> None:
    serializer = Serializer()
    serializer.named("token", 1)
    before = serializer.redacted
    serializer({"secret": 1, "pwd": 2})
    assert serializer.redacted - before == 2
    serializer.redacted = 0
    serializer.named("ok", 1)
    assert serializer.redacted == 0


def test_settings_redaction_lists_reach_the_serializer() -> None:
    serializer = Serializer.from_settings(Settings(redact=("customer",), redact_exclude=("session",)))
    assert serializer.named("customer", "ada") == REDACTED
    assert serializer.named("session", "s") == "'s'"
