"""Functions that receive, hold, return and raise secrets in every way the leak test knows."""

from __future__ import annotations

import json
from collections import namedtuple
from dataclasses import dataclass

from vault.markers import SECRETS

S = SECRETS
Cred = namedtuple("Cred", ["user", "secret"])


@dataclass
class Credentials:
    user: str
    password: str


class Slotted:
    __slots__ = ("api_key", "name")

    def __init__(self, api_key: str) -> None:
        self.name = "slotted"
        self.api_key = api_key


class Client:
    def __init__(self, client_secret: str) -> None:
        self.base = "https://api.example.com"
        self.client_secret = client_secret


def login(user, password):
    return f"welcome {user}"


def configure(**options):
    return sorted(options)


def store(settings):
    return len(settings)


def connect(*args):
    return len(args)


def fetch(url, dsn=None):
    return url.count("/")


def send(headers):
    return len(headers)


def note(text):
    return len(text)


def keep(creds, cred, slotted, client):
    return 4


def fail(target):
    raise ValueError(f"cannot connect to {target}")


def fail_literal():
    raise ConnectionError("login refused: password=Mk20q7Zx3Rv9Lp")


def fail_with_dict():
    raise KeyError({"password": S["exception args dict password"], "user": "bob"})


def fail_bearer():
    raise PermissionError(f"rejected header Authorization: Bearer {S['bearer in exception message']}")


def issue_tokens():
    return {"access_token": S["return value access_token"], "expires_in": 3600}


def compute():
    pw = S["local pw"]
    conn_str = f"mysql://root:{S['local conn_str URL password']}@db/app"
    headers = {"Cookie": f"theme=dark; sessionid={S['local headers Cookie sessionid']}"}
    body = json.dumps({"password": S["JSON text password"], "user": "bob"})
    line = f"X-Api-Key: {S['header line X-Api-Key']}"
    env = f"DATABASE_URL=postgresql://app:{S['env-style DATABASE_URL']}@db/app"
    yaml = f"secret: {S['local yaml-ish secret:']}"
    jwt = S["JWT"]
    aws = f"key {S['AWS access key id']} in use"
    gh = S["GitHub token"]
    slack = S["Slack token"]
    stripe = S["Stripe key"]
    google = S["Google API key"]
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{S['PEM private key body']}\n-----END RSA PRIVATE KEY-----"
    basic = f"Basic {S['Basic credentials']}"
    gitlab = S["GitLab token"]
    parts = [
        pw,
        conn_str,
        headers,
        body,
        line,
        env,
        yaml,
        jwt,
        aws,
        gh,
        slack,
        stripe,
        google,
        pem,
        basic,
        gitlab,
    ]
    return len(parts)


def lookalikes(session, transaction, key, author, tokenizer, monkey, query):
    return f"{key}/{author}/{tokenizer}/{monkey}/{query}"


def run(argv):
    login("bob", S["argument named password"])
    configure(api_key=S["keyword argument api_key"], region="eu")
    store({"token": S["dict key token"], "db": {"password": S["nested dict password"]}, "n": 1})
    store({b"password": S["bytes key password"], b"user": b"bob"})
    connect(f"postgresql://app:{S['positional *args URL password']}@db/shop", 5)
    fetch(
        f"https://bob:{S['url argument userinfo']}@api.example.com/v1?page=2&token={S['query string token']}",
        dsn=f"postgresql://app:{S['dsn field URL password']}@db/shop",
    )
    send(
        [
            ("Authorization", f"Bearer {S['header list Authorization Bearer']}"),
            ("client_secret", S["header list client_secret"]),
            ("Accept", "application/json"),
        ]
    )
    note(f"Authorization: Bearer {S['string Authorization: Bearer']}")
    keep(
        Credentials("bob", S["dataclass field password"]),
        Cred("bob", S["namedtuple field secret"]),
        Slotted(S["slots field api_key"]),
        Client(S["object attribute client_secret"]),
    )
    for failing, args in (
        (fail, (f"redis://:{S['exception message URL password']}@cache:6379/0",)),
        (fail_literal, ()),
        (fail_with_dict, ()),
        (fail_bearer, ()),
    ):
        try:
            failing(*args)
        except Exception as exc:
            print("caught", type(exc).__name__)
    issue_tokens()
    compute()
    return argv
