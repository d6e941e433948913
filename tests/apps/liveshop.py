"""A small service for live-control tests: pricing orders, one of which is bad now and then."""


def make_order(i):
    items = [(i * 7 + k * 3) % 40 + 1 for k in range(i % 4 + 1)]
    return {"id": i, "items": items}


def price(order):
    subtotal = sum(order["items"])
    discount = 0.1 if subtotal > 50 else 0.0
    total = round(subtotal * (1 - discount), 2)
    return total


def check(order):
    if order["id"] % 10 == 7:
        raise ValueError(f"order {order['id']} is on hold")
    return True


def process(i):
    order = make_order(i)
    check(order)
    return price(order)


def risky(n):
    api_token = "s3cret"
    values = [n, n * 2]
    if n == 2:
        divisor = n - 2
        return values[0] / divisor
    ratio = values[1] / n
    return ratio + len(api_token)


def gated(gate, order):
    gate.wait(10)
    subtotal = sum(order["items"])
    return subtotal
