"""What the rewriter tells the recorder about one instrumented function.

A :class:`FunctionSpec` is plain data (strings, ints, tuples) so that it can be cached with
``marshal`` next to the rewritten code object and turned back into a live probe on a later start
without parsing anything again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Kinds of capture point. Each kind becomes one event name when the call ends.
LOCALS = "locals"  # names assigned by a statement (or bound at the start of a block)
DELETE = "del"  # names removed by ``del``
LINE = "line"  # a chosen line was reached
EXPRESSION = "expr"  # the value of a call expression (level "expressions")
RETURN = "return"  # a value returned from a line

# Names the rewritten code uses. All start with an underscore, so ``from m import *`` never
# exports them, and none starts with two, so name mangling in class bodies never touches them.
RECORDER = "_otel_scope_r"  # the per-call recorder, a local of the instrumented function
PROBE_PREFIX = "_otel_scope_p_"  # + number: names a function's probe (its spec, its registry entry)
# + a probe's name: the string constant rewritten code reads its probe from until the probe takes
# its place among the code's constants (see recorder.bind). Not a module global: Python sets those
# to None at interpreter exit, while finalizers may still call the function. No compile folds an
# attribute read of a string.
PLACEHOLDER = "\x00otel-scope probe "

# The marshal-able forms the rewrite cache keeps next to a module's code (see FunctionSpec.to_data).
PointData = tuple[str, int, tuple[str, ...], str]
SpecData = tuple[str, str, str, int, str, tuple[str, ...], bool, tuple[PointData, ...]]


@dataclass
class Point:
    """One place in a function where the recorder is called.

    ``suite_key`` orders a point among the statements of a one-line block (``if x: y = 1``),
    where the rewriter appends calls at the end of the line and the assembler moves them into
    place (see :mod:`otel_scope.compile_time.rewriter`); ``None`` elsewhere.
    """

    kind: str
    line: int
    names: tuple[str, ...] = ()
    text: str = ""
    suite_key: int | None = None

    def to_data(self) -> PointData:
        return (self.kind, self.line, self.names, self.text)


@dataclass
class FunctionSpec:
    """One instrumented function: identity, span attributes and its capture points."""

    module: str
    qualname: str
    filename: str
    def_line: int
    target: str = ""
    params: tuple[str, ...] = ()
    generator: bool = False
    points: list[Point] = field(default_factory=list)

    def add(self, point: Point) -> int:
        """Register ``point`` and return its index (the constant the rewritten code passes)."""
        self.points.append(point)
        return len(self.points) - 1

    def to_data(self) -> SpecData:
        """A marshal-able form (see :meth:`from_data`)."""
        return (
            self.module,
            self.qualname,
            self.filename,
            self.def_line,
            self.target,
            self.params,
            self.generator,
            tuple(p.to_data() for p in self.points),
        )

    @classmethod
    def from_data(cls, data: SpecData) -> FunctionSpec:
        module, qualname, filename, def_line, target, params, generator, points = data
        return cls(
            module,
            qualname,
            filename,
            def_line,
            target,
            tuple(params),
            generator,
            [Point(kind, line, tuple(names), text) for kind, line, names, text in points],
        )
