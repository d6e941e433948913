"""A Flask app served by gunicorn's pre-fork workers (tests/test_prefork_server.py): the master
never imports it, each worker does, after its fork."""

from flask import Flask

app = Flask(__name__)


def price(n):
    total = 0
    for i in range(n):
        total += i * 3
    return total


@app.route("/order/<int:n>")
def order(n):
    return f"price {price(n)}"
