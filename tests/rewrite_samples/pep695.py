"""Type-parameter syntax (Python 3.12+)."""


def first[T](items: list[T]) -> T:
    head = items[0]  # @head
    return head


class Box[T]:
    def __init__(self, item: T) -> None:
        self.item = item

    def get[U](self, default: U) -> T | U:
        found = self.item if self.item is not None else default  # @found
        return found


type Pair[K] = tuple[K, K]
