"""Calls liveshop.risky four times; the second call fails. Output must not change under otel-scope."""

import sys

import liveshop


def main():
    for n in (1, 2, 3, 4):
        try:
            print(n, liveshop.risky(n))
        except ZeroDivisionError as exc:
            print(n, "failed:", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
