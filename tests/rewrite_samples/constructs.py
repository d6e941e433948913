"""Every construct the rewriter must handle; `# @name` comments mark lines the tests look up."""

# fmt: off
# (the layout is the test data: one-line blocks and multi-line statements must stay as written)
import asyncio

COUNTER = 0


def assignments(a):
    """Docstring stays first."""
    x = a + 1  # @x
    y, (z, *rest) = x, (2, 3, 4)  # @unpack
    x += 10  # @aug
    w: int = x * 2  # @ann
    v: int
    if (n := w // 2) > 0:  # @walrus
        pass
    squares = [i * i for i in range(3)]  # @comp
    inc = lambda q: q + 1  # @lambda
    import os.path as osp  # @import
    del y  # @del
    return x  # @ret


def loops(n):
    total = 0
    for i in range(n):  # @for
        total += i  # @for_body
    while total > 3:  # @while
        total -= 3
    for j, (k, l) in enumerate([(1, 2)]): total += j + k + l  # @for_suite
    return total


def handlers(fail):
    try:
        if fail:
            raise ValueError("boom")  # @raise
        result = "ok"
    except ValueError as err:  # @except
        result = str(err)  # @except_body
    finally:
        done = True  # @finally
    with open(__file__) as fh: first = fh.readline()  # @with
    return result


def return_in_finally():
    try:
        raise KeyError("swallowed")
    finally:
        return "from finally"  # @ret_finally


def matcher(value):
    match value:
        case {"kind": kind, **others}:  # @case_map
            return kind
        case [first, *more]:  # @case_seq
            return first
        case str() as text if (size := len(text)) > 2:  # @case_guard
            return size
        case _:
            return None


def outer(n):
    count = 0

    def bump(step):
        nonlocal count
        count += step  # @nonlocal
        return count

    bump(n)
    bump(n)
    return count


def use_global(step):
    global COUNTER
    COUNTER += step  # @global
    return COUNTER


def gen(n):
    for i in range(n):
        got = yield i  # @yield
        if got is not None:
            i = got  # @got
    return "done"


def delegate(n):
    result = yield from gen(n)  # @yield_from
    return result


async def coro(delay, value):
    before = value  # @async_before
    await asyncio.sleep(delay)
    after = value * 2  # @async_after
    return after


async def agen(n):
    for i in range(n):
        item = i * 10  # @agen_item
        yield item
        await asyncio.sleep(0)


class Base:
    def greet(self):
        return "base"


class Child(Base):
    def greet(self):
        parent = super().greet()  # @super
        klass = __class__  # @class_cell
        return parent + ":" + klass.__name__

    @staticmethod
    def static(x):
        y = x * 3  # @static
        return y

    @classmethod
    def make(cls, tag):
        name = cls.__name__ + tag  # @classmethod
        return name

    @property
    def prop(self):
        value = 42  # @property
        return value


def decorated_helper(func):
    def inner(*args, **kwargs):
        return func(*args, **kwargs)

    inner.__wrapped__ = func
    return inner


@decorated_helper
def decorated(x):
    doubled = x * 2  # @decorated
    return doubled


def multiline(a):
    x = (  # @ml_x
        a
        + 1
    )
    text = """first line
second line"""  # @ml_str
    combined = "{}-{}".format(
        x,
        len(text),
    )  # @ml_combined_end
    return combined


def fails_multiline(a):
    x = 1
    y = (
        a
        / 0  # @ml_fail
    )
    return x + y


def uses_locals():
    x = 1
    return sorted(locals())
