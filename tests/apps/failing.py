"""Functions that fail in the ways exception-frame and escalation tests need."""

import json
import time


def parse(text):
    cleaned = text.strip()
    return json.loads(cleaned)  # fails inside the standard library


def deep(n, limit):
    marker = f"level {n}"
    if n == limit:
        raise RecursionError(marker)
    return deep(n + 1, limit)


def outer(x):
    doubled = x * 2
    return inner(doubled)


def inner(y):
    password = "hunter2"
    half = y // 2
    return 10 // (half - y // 2) + len(password)


def nap(seconds):
    time.sleep(seconds)
    return seconds


def stop(code):
    raise SystemExit(code)


def exhausted(items):
    return next(iter(items))  # StopIteration for an empty list: control flow, not a fault
