"""A Flask app whose functions are held elsewhere before any target exists (used by
tests/test_runtime_references.py): Flask's view_functions and a HANDLERS registry."""

from flask import Flask

app = Flask(__name__)
HANDLERS = {}


def handler(name):
    def register(func):
        HANDLERS[name] = func
        return func

    return register


@app.route("/hello/<name>")
def hello(name):
    return f"hello {name}"


@handler("greet")
def greet(who, *, punctuation="!"):
    return f"hi {who}{punctuation}"


class Views:
    @staticmethod
    def ping():
        return "pong"


app.add_url_rule("/ping", view_func=Views.ping)


@app.route("/total/<int:n>")
def total(n):
    running = 0
    for i in range(n):
        running += i
    return str(running)


class Counter:
    def __init__(self):
        self.count = 0

    def bump(self, by):
        self.count += by
        return self.count


COUNTER = Counter()
HANDLERS["bump"] = COUNTER.bump  # a bound method, taken before any target
