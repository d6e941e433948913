"""Methods that change (or do not change) their object, traced with state capture.

opentelemetry-instrument --scope-state 'state_work:*' python app_state.py
"""

import asyncio

from state_work import USER_CODE_RAN, Counter, Inventory, Slotted


def main():
    inv = Inventory({"apple": 5})
    print("reserve", inv.reserve("apple", 2))
    inv.rename("side")
    print("peek", inv.peek("apple"))
    inv.rotate_password("s3cret")
    try:
        inv.fail()
    except ValueError as exc:
        print("caught", exc)
    inv.add_and_drop()
    s = Slotted()
    s.push(3)
    print("incr", asyncio.run(Counter().incr()))
    print("user code ran", USER_CODE_RAN)


if __name__ == "__main__":
    main()
