"""Secrets found by what a text *is*, not by the name it was stored under.

Name-based redaction (:mod:`otel_scope.capture.redaction`) hides ``password=...`` arguments,
but a secret also travels inside ordinary-looking text: a ``url`` argument holding
``postgresql://u:SECRET@h/db``, an exception message quoting a header, a command line with
``--token=SECRET``. :class:`Scrubber` replaces the secret part of such text with ``[redacted]``
and leaves the rest readable. It is applied to every string otel-scope records: each ``str`` and
``bytes`` value the serializer renders (before it is cut to length, so a cut never leaves half a
secret), dictionary keys, exception messages and stack traces, span status descriptions and the
session's command line.

What is matched (modelled on ddtrace's query-string and WAF obfuscation patterns, with keys
judged by the same name rule as arguments, which is Sentry's ``EventScrubber`` denylist idea):

* **URL userinfo**: ``scheme://user:PASSWORD@host`` keeps ``user`` and hides the password.
* **Pairs whose key is a secret name**, in the spellings text uses: ``key=value`` (query strings,
  command-line ``--key=value``, log lines), ``key: value`` (headers, YAML), ``"key": "value"``
  (JSON, Python reprs) and ``('key', 'value')`` (header lists). The key is judged by
  :meth:`Redactor.is_secret`, so ``access_token=`` and ``client_secret:`` are hidden while
  ``session=``, ``key=`` or ``author:`` are not.
* **Authorization schemes**: ``Bearer <credentials>``, and ``Basic <base64>`` when the base64
  decodes to ``user:password`` (so the English word "basic" is left alone).
* **Token shapes** that are secrets wherever they appear: JWTs (``eyJ...``.``eyJ...``), AWS
  access key IDs (``AKIA``/``ASIA``... + 16), Google API keys (``AIza`` + 35), GitHub tokens
  (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``), GitLab (``glpat-``),
  Slack (``xoxb-``, ``xoxp-``, ``xoxa-``, ``xoxr-``, ``xoxs-``, ``xoxo-``), Stripe (``sk_live_``,
  ``rk_live_``, ``sk_test_``, ``whsec_``), npm (``npm_``), OpenAI/Anthropic-style ``sk-...``
  keys, Google OAuth access tokens (``ya29.``), and PEM private-key blocks
  (``-----BEGIN ... PRIVATE KEY-----`` to its end, or to the end of the text when cut).

Not matched: passwords in free prose ("my password is hunter2"), secrets that have no shape or
key (a bare random string), credit-card numbers. Those need a name (``redact``) to be hidden.

Speed: this runs on every recorded string. Text that cannot hold any of the shapes is returned
untouched after a few ``in`` checks: a pair needs ``=``, ``:`` or ``,``; a URL needs ``@``; and
every token shape is at least 14 characters long, so short identifiers cost next to nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from otel_scope.capture.redaction import REDACTED, Redactor

_MIN_SHAPE = 14  # the shortest token shape: "Basic " + 8 base64 characters

_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s/?#@:'\"]*):([^\s/?#'\"]*)@")

# No alternative starts with \b: a leading literal lets the regex engine skip ahead quickly. The
# word boundary before a token is checked in _shape instead.
_SHAPES = re.compile(
    r"""
      (?P<pem>-----BEGIN[A-Z ]{0,40}PRIVATE\ KEY(?:\ BLOCK)?-----
              (?:.*?-----END[A-Z ]{0,40}PRIVATE\ KEY(?:\ BLOCK)?-----|.*))
    | (?P<scheme>[Bb]earer\s+)(?P<bearer>[A-Za-z0-9._~+/=-]{8,})
    | (?P<basic>Basic\s+)(?P<basic64>[A-Za-z0-9+/]{6,}={0,2})
    | ey[I-L][\w-]{10,}\.ey[I-L][\w-]{4,}(?:\.[\w-]*)?
    | A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA|BIA|CCA)[A-Z0-9]{16}(?![A-Z0-9])
    | AIza[0-9A-Za-z_-]{35}
    | gh[pousr]_[A-Za-z0-9]{30,}
    | github_pat_[A-Za-z0-9_]{22,}
    | glpat-[A-Za-z0-9_-]{20,}
    | xox[abposr]-[A-Za-z0-9-]{10,}
    | [sr]k_(?:live|test)_[A-Za-z0-9]{10,}
    | whsec_[A-Za-z0-9]{20,}
    | npm_[A-Za-z0-9]{36}
    | sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}
    | ya29\.[0-9A-Za-z_-]{20,}
    """,
    re.VERBOSE | re.DOTALL,
)

# Lower-case pieces of which every default secret name contains at least one (a test checks it),
# and the lower-case starts of every shape above. Text containing none of them is returned as it
# is after one regex pass, without looking at its pairs one by one.
STEMS: tuple[str, ...] = (
    "pass", "pw", "secret", "token", "key", "auth", "cookie", "sess", "csrf", "xsrf", "jwt", "otp",
    "ssn", "cvc", "cvv", "2fa", "card", "number", "pin", "credential", "dsn", "conn", "url", "pem",
    "pkcs", "symfony", "security", "voter", "sid", "bearer",
)  # fmt: skip
_SHAPE_STARTS = (
    "://", "-----begin", "basic", "eyi", "eyj", "eyk", "eyl", "akia", "asia", "agpa", "aida", "aroa",
    "anpa", "anva", "aipa", "abia", "acca", "aiza", "gh", "glpat-", "xox", "k_live_", "k_test_",
    "whsec_", "npm_", "sk-", "ya29.",
)  # fmt: skip
_WORD = re.compile(r"\w")
_CACHE_LIMIT = 4096  # distinct texts remembered
_CACHED_LENGTH = 256  # longer texts are scrubbed every time rather than kept


def _gate(stems: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(s) for s in sorted({*stems, *_SHAPE_STARTS}, key=len, reverse=True)))


# A key and its separator; the value after it is measured by hand (see _value_end), so that a key
# that is not secret consumes nothing and a secret pair nested in its value is still found.
_PAIR = re.compile(
    r"""(?<![\w.])(?P<key>[A-Za-z_][\w.-]{0,63}) (?P<kq>['"]?) [ \t]*
        (?: (?P<sep>=(?!=)|:(?!//)) | (?P<comma>,)(?=[ \t]*b?['"]) ) [ \t]*""",
    re.VERBOSE,
)
_UNQUOTED_EQ = re.compile(r"[^\s&;,'\"()\[\]{}<>]*")  # key=value: up to the next delimiter
_UNQUOTED_COLON = re.compile(r"[^\r\n'\",)\]}]*")  # key: value: a header's value, to the line end


def _value_end(text: str, start: int, colon: bool) -> int:
    """Where the value starting at ``start`` ends: its closing quote, or the next delimiter."""
    n = len(text)
    i = start
    if i < n and text[i] == "b" and i + 1 < n and text[i + 1] in "'\"":
        i += 1  # a bytes literal b'...'
    if i < n and text[i] in "'\"":
        quote = text[i]
        j = i + 1
        while j < n:
            c = text[j]
            if c == "\\":
                j += 2
                continue
            if c == quote:
                return j + 1
            j += 1
        return n
    match = (_UNQUOTED_COLON if colon else _UNQUOTED_EQ).match(text, start)
    end = match.end() if match else start
    while end > start and text[end - 1] in " \t":
        end -= 1
    return end


def _quoted(original: str) -> str:
    """``[redacted]`` in the same quotes as ``original`` (``'x'`` -> ``'[redacted]'``)."""
    if original[:2] in ("b'", 'b"'):
        return f"b{original[1]}{REDACTED}{original[1]}"
    if original[:1] in ("'", '"'):
        return f"{original[0]}{REDACTED}{original[0]}"
    return REDACTED


def _is_basic_credential(encoded: str) -> bool:
    try:
        return b":" in base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False


class Scrubber:
    """Replaces the secret parts of a text by :data:`REDACTED` (see the module doc).

    ``scrub`` returns its argument itself when nothing was found, so callers can tell with ``is``
    whether anything was hidden (and count it) without comparing strings.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor if redactor is not None else Redactor()
        # A user's extra name is found by its longest piece ("customer" of "customer_email"),
        # which any spelling of it contains.
        extra = tuple(
            max(re.split(r"[-_. @$]+", n.lower()), key=len) for n in self.redactor.extra
        )
        self._gate = _gate(STEMS + tuple(e for e in extra if e))
        self._known: dict[str, str] = {}

    def scrub(self, text: str) -> str:
        """``text`` with every secret found in it replaced; ``text`` itself when none was."""
        pairs = "=" in text or ":" in text or "," in text
        if len(text) < _MIN_SHAPE and not pairs:
            return text
        if len(text) > _CACHED_LENGTH:
            return self._scrub(text, pairs)
        known = self._known
        answer = known.get(text)
        if answer is None:
            # The same arguments, URLs and messages come back on every call: remember answers,
            # the way Redactor remembers names, and forget them all when there are too many.
            if len(known) >= _CACHE_LIMIT:
                known.clear()
            answer = known[text] = self._scrub(text, pairs)
        return text if answer == text else answer

    def _scrub(self, text: str, pairs: bool) -> str:
        if self._gate.search(text.lower()) is None:
            return text
        # Pairs first: "Authorization: Bearer X" and "dsn: scheme://u:p@h" lose their whole value.
        out = self._pairs(text) if pairs else text
        if "@" in out and "://" in out:
            out = _URL_USERINFO.sub(rf"\1:{REDACTED}@", out)
        if len(out) >= _MIN_SHAPE:
            out = _SHAPES.sub(self._shape, out)
        return text if out == text else out

    def scrub_bytes(self, data: bytes) -> bytes:
        """The same for bytes, read as Latin-1 so every byte maps to one character and back."""
        text = data.decode("latin-1")
        out = self.scrub(text)
        return data if out is text else out.encode("latin-1")

    def argv(self, argv: Sequence[str]) -> list[str]:
        """A command line with secret values hidden: ``--token=X``, ``--token X``, URLs, shapes."""
        out: list[str] = []
        hide_next = False
        for arg in argv:
            if hide_next:
                out.append(REDACTED)
                hide_next = False
                continue
            if arg.startswith("-") and "=" not in arg:
                hide_next = self.redactor.is_secret(arg.lstrip("-"))
            out.append(self.scrub(arg))
        return out

    @staticmethod
    def _shape(match: re.Match[str]) -> str:
        start = match.start()
        if start and _WORD.match(match.string, start - 1):  # "desk-..." is not an "sk-" key
            return match.group(0)
        if match.group("pem") is not None:
            return REDACTED
        scheme = match.group("scheme")
        if scheme is not None:
            return f"{scheme}{REDACTED}"
        basic = match.group("basic")
        if basic is not None:
            return f"{basic}{REDACTED}" if _is_basic_credential(match.group("basic64")) else match.group(0)
        return REDACTED

    def _pairs(self, text: str) -> str:
        is_secret = self.redactor.is_secret
        known = self.redactor.known
        parts: list[str] = []
        done = 0  # text before this index is already in parts
        pos = 0
        while True:
            match = _PAIR.search(text, pos)
            if match is None:
                break
            key = match.group("key")
            secret = known.get(key)
            if secret is None:
                secret = is_secret(key)
            if not secret:
                pos = match.start("kq")  # the key's own characters are not a key again
                if pos == match.start():
                    pos += 1
                continue
            start = match.end()
            comma = match.group("comma") is not None
            if comma and not match.group("kq"):
                pos = match.end()
                continue
            end = _value_end(text, start, match.group("sep") == ":")
            if end == start or text[start:end] in (REDACTED, f"'{REDACTED}'", f'"{REDACTED}"'):
                pos = max(end, match.end())
                continue
            parts.append(text[done:start])
            parts.append(_quoted(text[start:end]))
            done = pos = end
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)


DEFAULT_SCRUBBER = Scrubber()
"""A scrubber with the default name list, for text recorded before settings are known."""
