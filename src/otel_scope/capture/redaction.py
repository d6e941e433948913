"""Which names hold secrets: the rule behind every ``[redacted]`` in otel-scope's output.

Argument names, local variable names, object field names and string dictionary keys are all
checked here before their value is serialized. The rule, applied to the *normalised* name
(lower-cased, with ``-``, ``_``, ``.``, space, ``@`` and ``$`` removed, so ``API-Key``,
``api_key`` and ``apiKey`` are the same name ``apikey``):

1. Names in :data:`DEFAULT_SECRET_NAMES` (ddtrace's list and Sentry's denylist, minus entries
   that are identifiers rather than secrets), plus the ``extra`` names, match exactly. Exact
   matching is why ``auth`` does not catch ``author`` or ``authority``.
2. Names *containing* one of :data:`SECRET_SUBSTRINGS` match: these words are long and specific
   enough that ``user_password``, ``client_secret`` or ``AWS_SECRET_ACCESS_KEY`` are caught
   without listing every spelling. Known harmless words that contain them (``secretary``) are
   in :data:`NOT_SECRET`.
3. Names *ending* in one of :data:`SECRET_SUFFIXES` match: ``access_token``, ``X-Auth-Token``
   and ``session_cookie`` are secrets, while ``max_tokens``, ``tokenizer`` and ``token_count``
   (common in language-model code) are not, which a substring rule for ``token`` would hide.
4. ``exclude`` names (normalised the same way) never match, whatever the rules above say.

False positives cost a value the user wanted to see; false negatives leak a credential into
telemetry that many people can read. The rules lean towards redacting, and ``redact_exclude``
(``OTEL_SCOPE_REDACT_EXCLUDE``) is the way back for a name such as ``token`` in a parser.
Left out on purpose, because they only look like secrets: ``session`` (an ORM or HTTP client
session is an object worth seeing; its ID is ``sessionid``), ``key`` alone (dict and cache keys),
``author``. Secrets inside such values are still found by value (:mod:`.scrubbing`). Also left
out, because they identify rather than authenticate and hiding them makes debugging harder:
``client_id``, ``transaction_id``, ``public_key``, ``nonce``, ``salt``, ``signature``, ``cipher``,
``pin`` (hardware and version pins), and network or location data (``ip_address``,
``x_forwarded_for``, ``geolocation``); add them with ``redact`` if your policy treats them as
personal data.
"""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[redacted]"
"""What a secret value is replaced by, everywhere otel-scope writes a value."""

DEFAULT_SECRET_NAMES: frozenset[str] = frozenset(
    {
        "2fa",
        "accesstoken",
        "apikey",
        "apisecret",
        "apisignature",
        "appkey",
        "applicationkey",
        "auth",
        "authheader",
        "authkey",
        "authorization",
        "authtoken",
        "bearer",
        "cardnumber",
        "ccnumber",
        "certificatepin",
        "clientsecret",
        "connectionstring",
        "connstr",
        "connectsid",
        "cookie",
        "cookies",
        "credentials",
        "creditcard",
        "csrf",
        "csrftoken",
        "cvc",
        "cvv",
        "databaseurl",
        "dsn",
        "dburl",
        "encryptionkey",
        "gpgkey",
        "jsessionid",
        "jwt",
        "licensekey",
        "masterkey",
        "mysqlpwd",
        "oauth",
        "oauthtoken",
        "otp",
        "passhash",
        "passwd",
        "password",
        "pemfile",
        "pgpkey",
        "phpsessid",
        "pincode",
        "pkcs8",
        "privatekey",
        "pw",
        "pwd",
        "recaptchakey",
        "refreshtoken",
        "routingnumber",
        "secret",
        "secretkey",
        "secrettoken",
        "securityanswer",
        "securitycode",
        "sessionid",
        "sessionkey",
        "setcookie",
        "sid",
        "signaturekey",
        "sshkey",
        "ssn",
        "symfony",
        "token",
        "voterid",
        "xapikey",
        "xauthtoken",
        "xcsrftoken",
        "xsrf",
        "xsrftoken",
    }
)
"""Normalised names that are secrets when they are the whole name."""

SECRET_SUBSTRINGS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "privatekey",
    "credential",
    "authorization",
)
"""Normalised words that make any name containing them a secret."""

SECRET_SUFFIXES: tuple[str, ...] = ("token", "cookie", "cookies", "sessionid")
"""Normalised endings that make a name a secret (``session_token``, but not ``tokens``)."""

NOT_SECRET: frozenset[str] = frozenset({"secretary", "secretaries", "secretariat"})
"""Normalised names that contain a secret word but are ordinary English."""

_STRIP = str.maketrans("", "", "-_. @$")
_CACHE_LIMIT = 4096  # distinct names remembered; dict keys can be unbounded (user IDs, ...)
_CACHED_NAME_LENGTH = 128


def normalize_name(name: str) -> str:
    """The form names are compared in: lower case without ``-_. @$`` (``X-Api-Key`` -> ``xapikey``)."""
    return name.lower().translate(_STRIP)


class Redactor:
    """Decides whether a name's value must be replaced by :data:`REDACTED`.

    ``extra`` adds exact names and ``exclude`` removes names; both are normalised like the names
    they are compared with. Answers are kept in :attr:`known` because the same argument, field and
    key names come back on every call; it is cleared (in place) when it reaches 4096 names so that
    dictionaries keyed by unbounded data cannot grow it forever.
    """

    def __init__(self, extra: Iterable[str] = (), exclude: Iterable[str] = ()) -> None:
        self.extra = tuple(extra)
        self.names = DEFAULT_SECRET_NAMES | {normalize_name(n) for n in self.extra}
        self.exclude = NOT_SECRET | {normalize_name(n) for n in exclude}
        self.known: dict[str, bool] = {}
        """Answers so far, by exact name. Read-only for callers: the serializer looks names up
        here first because a dict lookup is cheaper than a method call on every key."""

    def is_secret(self, name: str) -> bool:
        """True when a value called ``name`` must not be recorded (see the module's rules)."""
        if type(name) is not str:
            # A str subclass could override __hash__, __eq__ or lower(); compare a plain copy.
            name = str.__str__(name)
        answer = self.known.get(name)
        if answer is None:
            answer = self._decide(normalize_name(name))
            if len(name) <= _CACHED_NAME_LENGTH:  # a dict key can be a megabyte of data
                if len(self.known) >= _CACHE_LIMIT:
                    self.known.clear()
                self.known[name] = answer
        return answer

    def _decide(self, normal: str) -> bool:
        if normal in self.exclude:
            return False
        if normal in self.names or normal.endswith(SECRET_SUFFIXES):
            return True
        return any(word in normal for word in SECRET_SUBSTRINGS)
