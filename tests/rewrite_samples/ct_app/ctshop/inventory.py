"""A tiny inventory whose bug shows in its locals (compile-time end-to-end test)."""

STOCK = {"widget": 5, "gadget": 1}


def check_stock(item, wanted):
    available = STOCK.get(item, 0)  # @available
    reserved = min(
        wanted,
        available,
    )  # @reserved_end
    for attempt in range(2):  # @attempt
        missing = wanted - reserved
    return reserved, missing
