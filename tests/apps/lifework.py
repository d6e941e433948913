"""Functions the lifecycle tests trace (``--scope-targets lifework:*``): small, pure, fast."""


def job(n):
    return leaf(n) * 2


def leaf(n):
    return n + 1


def parent(count):
    total = 0
    for i in range(count):
        total += leaf(i)
    return total
