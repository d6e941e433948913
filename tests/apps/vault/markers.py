"""The planted secrets, each a unique marker, by the kind of place it hides in.

A marker without a shape of its own (``Mk01...``) can only be hidden by where it is (a name, a
URL's password, a header's value); the shaped ones (JWT, cloud keys, PEM) only by what they are.
The leak test scans every output for each marker; LOOK_ALIKES must still be shown.
"""

import base64


def _marker(i: int) -> str:
    return f"Mk{i:02d}q7Zx3Rv9Lp"


SECRETS: dict[str, str] = {
    "argument named password": _marker(1),
    "keyword argument api_key": _marker(2),
    "dict key token": _marker(3),
    "nested dict password": _marker(4),
    "dataclass field password": _marker(5),
    "namedtuple field secret": _marker(6),
    "slots field api_key": _marker(7),
    "object attribute client_secret": _marker(8),
    "command line --password=": _marker(9),
    "command line --token VALUE": _marker(10),
    "dsn field URL password": _marker(11),
    "url argument userinfo": _marker(12),
    "query string token": _marker(13),
    "bytes key password": _marker(14),
    "header list Authorization Bearer": _marker(15),
    "header list client_secret": _marker(16),
    "positional *args URL password": _marker(17),
    "string Authorization: Bearer": _marker(18),
    "exception message URL password": _marker(19),
    "exception source line password=": _marker(20),
    "local pw": _marker(21),
    "local conn_str URL password": _marker(22),
    "local headers Cookie sessionid": _marker(23),
    "JSON text password": _marker(24),
    "return value access_token": _marker(25),
    "exception args dict password": _marker(26),
    "header line X-Api-Key": _marker(27),
    "command line URL password": _marker(28),
    "env-style DATABASE_URL": _marker(29),
    "local yaml-ish secret:": _marker(30),
    "JWT": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJNazMxcTdaeDNSdjlMcCJ9.Mk31q7Zx3Rv9LpSignature",
    "AWS access key id": "AKIAMK32Q7ZX3RV9LP00",
    "GitHub token": "ghp_Mk33q7Zx3Rv9LpAbcdefghijklmnopqrstuv",
    "Slack token": "xoxb-1234567890-Mk34q7Zx3Rv9Lp",
    "Stripe key": "sk_live_Mk35q7Zx3Rv9Lp",
    "Google API key": "AIzaSyMk36q7Zx3Rv9LpAbcdefghijklmnopqrs",
    "PEM private key body": "MIIEMk37q7Zx3Rv9LpBAAKCAQEA",
    "Basic credentials": base64.b64encode(b"admin:Mk38q7Zx3Rv9Lp").decode(),
    "GitLab token": "glpat-Mk39q7Zx3Rv9LpAbcdef",
    "bearer in exception message": _marker(40),
}

# Values that must be shown, under names or in text that only look like secrets.
LOOK_ALIKES = {
    "key": "primary-key-Lk01",
    "author": "alice-Lk02",
    "tokenizer": "bpe-Lk03",
    "monkey": "banana-Lk04",
    "query": "page=2&sort=name-Lk05",
}
