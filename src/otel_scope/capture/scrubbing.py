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
  access key IDs (``AKIA``/``ASIA`` + 16; not the ``AIDA``/``AROA`` IDs of users and roles),
  Google API keys (``AIza`` + 35), GitHub tokens (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``,
  ``ghr_``, ``github_pat_``), GitLab (``glpat-``), Slack (``xoxb-``, ``xoxp-``, ``xoxa-``,
  ``xoxr-``, ``xoxs-``, ``xoxo-``), Stripe (``sk_live_``, ``rk_live_``, ``sk_test_``,
  ``whsec_``), npm (``npm_``), OpenAI/Anthropic-style ``sk-...`` keys, Google OAuth access
  tokens (``ya29.``), and PEM private-key blocks (``-----BEGIN ... PRIVATE KEY-----`` to its
  end, or to the end of the text when cut).

Not matched: passwords in free prose ("my password is hunter2"), secrets that have no shape or
key (a bare random string), credit-card numbers. Those need a name (``redact``) to be hidden.

Speed: this runs on every recorded string, so no pass tries every pattern at every position.
Each kind of secret has something it cannot do without, found by a fast scan: a pair is looked
for only at its separator (``=``, ``:``, ``,``), whose key is then read backwards and judged by
the (cached) name rule; a URL needs ``://`` and ``@``; ``Bearer``, ``Basic`` and PEM blocks are
found by their literal words; the other token shapes only when one of their prefixes occurs
(``in`` checks), and then only at the start of each run of at least 14 token characters. Short
text with none of ``=:,`` is returned at once, and answers for texts of up to 256 characters
are remembered (up to 4096 texts).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from otel_scope.capture.redaction import REDACTED, Redactor

_MIN_SHAPE = 14  # the shortest token shape, and the shortest "Basic " credential
_CACHE_LIMIT = 4096  # distinct texts remembered
_CACHED_LENGTH = 256  # longer texts are scrubbed every time rather than kept

_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s/?#@:'\"]*):([^\s/?#'\"]*)@")
_PEM = re.compile(
    r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----|.*)",  # to its end, or all of a cut block
    re.DOTALL,
)
_BEARER = re.compile(r"(?<![\w-])([Bb]earer\s+)[A-Za-z0-9._~+/=-]{8,}")
_BASIC = re.compile(r"(?<![\w-])(Basic\s+)([A-Za-z0-9+/]{6,}={0,2})")
# A run of token characters long enough to be a token. The lookbehind makes the scan linear: a
# position inside a word fails at once instead of re-reading the rest of the word.
_RUN = re.compile(r"(?<![\w.+/=-])[\w.+/=-]{14,}")
# Token shapes, tried once at the start of each run (match, not search).
_TOKEN = re.compile(
    r"""(?:
      eyJ[\w-]{10,}\.eyJ[\w-]{4,}(?:\.[\w-]*)?
    | A(?:KIA|SIA)[A-Z0-9]{16}(?![A-Z0-9])
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
    )""",
    re.VERBOSE,
)
# Text without any of these cannot hold a token shape (checked with `in`, which is much faster
# than scanning for runs). Keep in step with _TOKEN.
_TOKEN_STARTS = (
    "eyJ",
    "AKIA",
    "ASIA",
    "AIza",
    "gh",
    "glpat-",
    "xox",
    "_live_",
    "_test_",
    "whsec_",
    "npm_",
    "sk-",
    "ya29.",
)
# Pairs are found from their separator (a one-character scan), the key read backwards from it.
_SEPARATOR = re.compile(r"[=:,]")
_SPACES = " \t"
# Read in the reversed text from just before a separator: spaces, the key's closing quote, the key.
_KEY_REVERSED = re.compile(r"""[ \t]*(['"]?)([\w.-]{1,64})""")
_UNQUOTED_EQ = re.compile(r"[^\s&;,'\"()\[\]{}<>]*")  # key=value: up to the next delimiter
_UNQUOTED_COLON = re.compile(r"[^\r\n'\",)\]}]*")  # key: value: a header's value, to the line end
_ALREADY = (REDACTED, f"'{REDACTED}'", f'"{REDACTED}"')


def _value_end(text: str, start: int, colon: bool) -> int:
    """Where the value starting at ``start`` ends: its closing quote, or the next delimiter."""
    n = len(text)
    i = start
    if i + 1 < n and text[i] == "b" and text[i + 1] in "'\"":
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


def _opens_pair(text: str, key_start: int) -> bool:
    """Whether the quoted key starting at ``key_start`` opens a ``('key', 'value')`` pair.

    Only then is ``,`` a key's separator: an unquoted key before a comma is an argument list,
    and a quoted one not opening a tuple or list is a value (``{"key": "token", "n": 1}``).
    """
    i = key_start - 2  # before the opening quote
    while i >= 0 and text[i] in _SPACES:
        i -= 1
    return i >= 0 and text[i] in "(["


def _quoted(original: str) -> str:
    """``[redacted]`` in the same quotes as ``original`` (``'x'`` -> ``'[redacted]'``)."""
    if original[:2] in ("b'", 'b"'):
        return f"b{original[1]}{REDACTED}{original[1]}"
    if original[:1] in ("'", '"'):
        return f"{original[0]}{REDACTED}{original[0]}"
    return REDACTED


def _basic(match: re.Match[str]) -> str:
    """``Basic <base64>`` is a credential only when the base64 decodes to ``user:password``."""
    encoded = match.group(2)
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return f"{match.group(1)}{REDACTED}" if b":" in decoded else match.group(0)


def _tokens(text: str) -> str:
    parts: list[str] = []
    done = 0
    for run in _RUN.finditer(text):
        start = run.start()
        token = _TOKEN.match(text, start, run.end())
        if token is None:
            continue
        parts.append(text[done:start])
        parts.append(REDACTED)
        done = token.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


class Scrubber:
    """Replaces the secret parts of a text by :data:`REDACTED` (see the module doc).

    ``scrub`` returns its argument itself when nothing was found, so callers can tell with ``is``
    whether anything was hidden (and count it) without comparing strings.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor if redactor is not None else Redactor()
        self._known: dict[str, str] = {}

    def scrub(self, text: str) -> str:
        """``text`` with every secret found in it replaced; ``text`` itself when none was."""
        if len(text) < _MIN_SHAPE and "=" not in text and ":" not in text and "," not in text:
            return text
        if len(text) > _CACHED_LENGTH:
            return self._scrub(text)
        known = self._known
        answer = known.get(text)
        if answer is None:
            # The same arguments, URLs and messages come back on every call: remember answers,
            # the way Redactor remembers names, and forget them all when there are too many.
            if len(known) >= _CACHE_LIMIT:
                known.clear()
            answer = known[text] = self._scrub(text)
        return text if answer == text else answer

    def _scrub(self, text: str) -> str:
        # Pairs first: "Authorization: Bearer X" and "dsn: scheme://u:p@h" lose their whole value.
        out = self._pairs(text)
        if "://" in out and "@" in out:
            out = _URL_USERINFO.sub(rf"\1:{REDACTED}@", out)
        if len(out) >= _MIN_SHAPE:
            if "-----BEGIN" in out:
                out = _PEM.sub(REDACTED, out)
            if "earer" in out:
                out = _BEARER.sub(rf"\1{REDACTED}", out)
            if "Basic" in out:
                out = _BASIC.sub(_basic, out)
            if any(map(out.__contains__, _TOKEN_STARTS)):
                out = _tokens(out)
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

    def _pairs(self, text: str) -> str:
        is_secret = self.redactor.is_secret
        known = self.redactor.known
        n = len(text)
        reverse = text[::-1]  # the key before a separator is read forwards in the reversed text
        parts: list[str] = []
        done = 0  # text before this index is already in parts
        for sep in _SEPARATOR.finditer(text):
            at = sep.start()
            if at < done:
                continue  # inside a value already redacted
            key_match = _KEY_REVERSED.match(reverse, n - at)
            if key_match is None:
                continue
            key = key_match.group(2)[::-1]
            secret = known.get(key)
            if secret is None:
                secret = is_secret(key)
            if not secret or n - key_match.end() < done:
                continue
            char = text[at]
            quoted = bool(key_match.group(1))
            if (
                (char == "=" and text[at + 1 : at + 2] == "=")
                or (char == ":" and text[at + 1 : at + 3] == "//")
                or (at and text[at - 1] in "=!<>")  # ==, !=, <=, >=
                or (char == "," and not (quoted and _opens_pair(text, n - key_match.end())))
            ):
                continue
            value = at + 1
            while value < n and text[value] in _SPACES:
                value += 1
            if char == "," and not (
                text[value : value + 1] in "'\"" or text[value : value + 2] in ("b'", 'b"')
            ):
                continue
            stop = _value_end(text, value, char == ":")
            if stop == value or text[value:stop] in _ALREADY:
                continue
            parts.append(text[done:value])
            parts.append(_quoted(text[value:stop]))
            done = stop
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)
