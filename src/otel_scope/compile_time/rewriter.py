"""Rewriting a module's source so chosen functions report their locals, lines and returns.

The module is parsed once with ``ast``; that tree is what gets compiled. Each outermost planned
function (with the planned functions inside it) is rewritten from its own lines only, so the cost
follows what is planned, not the module's size: one method of a 2,600-line module recompiles in
tens of milliseconds. Two stages per function, so that line numbers stay exact:

1. **libcst** (:class:`CaptureInserter`) reads the function's text (an indented one under an
   ``if 1:`` header, which keeps every column) and inserts calls to the per-call recorder
   (``_otel_scope_r.v(3, x, y)``) after every statement that assigns captured locals, at the
   start of blocks that bind names (``for``, ``with``, ``except``, ``case``) and before chosen
   lines. It never changes a character of an original line: each insertion is a *new line*
   carrying a marker comment ``#@otel-scope:<line>`` that names the original line it belongs
   to. Only in one-line blocks (``if x: y = 1``), where no new line can go, calls are appended
   after the block's last statement, which leaves every original column in place too. A
   function it would leave unchanged (no binding statement, no chosen line, no nested
   definition; every function at level ``boundaries``) skips libcst: its ``ast`` is the same.

2. **ast** (:func:`_assemble`) parses the generated text, maps every line back to the module's
   (unmarked lines are the original lines in order, marked lines take their marker's line), and
   then does the edits that must not move a single character: the function boundary (enter,
   exception, exit), return and ``yield`` wrappers, expression capture, and a second, untouched
   copy of the body that runs when nothing is recorded. Nodes it adds have no line at all
   (``lineno = -1``), which CPython compiles to instructions without a line, except the entry
   test, which takes the line of the body's first instruction (:func:`_first_line`), and
   wrappers, which take the line of what they wrap: tracebacks, ``f_lineno``,
   ``sys.settrace`` line events and coverage see exactly the original lines and events. The
   result replaces the function's node in the module's tree.

A planned function becomes::

    def f(a):
        "docstring"
        global g                                  # hoisted: both copies assign it
        if (not P.on or <refused> or <left out>
                or (_otel_scope_r := P.enter(_otel_scope_r)) is None):
            <the original body>                   # not recording: the original code, unchanged
        else:
            with _otel_scope_r:                   # records an exception, emits events, ends
                _otel_scope_r.a(a)                # the span we opened
                <the body with recorder calls>

``P`` stands for the function's :class:`~otel_scope.compile_time.recorder.Probe`, one of its
code's constants (``LOAD_CONST``), never a module global: Python sets those to None at interpreter
exit, while finalizers (``__del__``, weakref callbacks) may still call the function. The compiled
code holds a placeholder string there, which :func:`~otel_scope.compile_time.recorder.bind`
replaces by the probe (the rewrite cache keeps the placeholder: ``marshal`` cannot hold a probe).

``<refused>`` is two identity tests, no call: whether the span core said no under the current
context and provider already (see ``Probe`` in the recorder), which is what makes a call under an
unsampled parent, or with no SDK, cost little more than a call with capture switched off.
``<left out>`` is ``(_otel_scope_r := P.gate.tick()) < P.gate.next_check``:
one C call that numbers the call, whose call sampler leaves it out when the number is below the
next check (see ``otel_scope.capture.sampling``); ``enter`` gets the number.

Anything that cannot be rewritten safely is compiled from the original source instead and
reported in :attr:`RewriteResult.skipped`; the rewriter never produces broken code.
"""

from __future__ import annotations

import ast
import bisect
import dis
import fnmatch
import gc
import logging
import pickle
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, TypeVar, cast

import libcst as cst

from otel_scope._sdk import PROVIDER_GLOBAL
from otel_scope.compile_time import skips
from otel_scope.compile_time.recorder import bind
from otel_scope.compile_time.spec import (
    DELETE,
    EXPRESSION,
    LINE,
    LOCALS,
    PLACEHOLDER,
    PROBE_PREFIX,
    RECORDER,
    RETURN,
    FunctionSpec,
    Point,
    SpecData,
)
from otel_scope.config.patterns import wildcard_skips
from otel_scope.targets.plan import CapturePlan

_log = logging.getLogger("otel_scope")

MARKER = "#@otel-scope:"
_MARKER_RE = re.compile(r"#@otel-scope:(\d+)$")
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")

# Calls that read or write a frame's local variables behind the compiler's back: with the
# recorder's own local (``_otel_scope_r``) in the frame, their results would differ.
_FRAME_READERS = frozenset({"locals", "exec", "eval"})
_FRAME_ATTRIBUTES = frozenset({"_getframe", "currentframe", "f_locals"})
_FRAME_NAMES = (*_FRAME_READERS, "vars", *_FRAME_ATTRIBUTES)
_UNSAFE_WORDS = (*_FRAME_NAMES, "_otel_scope_")  # text without: safe
# The same, the names as whole words: a name token never touches a letter, digit or "_" outside
# it (``1eval`` is a SyntaxError), so text where each is part of a longer word (``eval_ctx``,
# ``execute``) is safe too, without walking its functions.
_UNSAFE_NAMES = re.compile(rf"\b(?:{'|'.join(_FRAME_NAMES)})\b|_otel_scope_")


@dataclass
class RewriteResult:
    """The outcome of :func:`rewrite_source`.

    ``code`` is the module's code object, ready for ``exec`` in the module's namespace: each
    rewritten function's probe is among its code's constants (made and registered by
    :func:`otel_scope.compile_time.recorder.bind`). ``template`` is the same code with each
    probe's placeholder string instead (:data:`~otel_scope.compile_time.spec.PLACEHOLDER`), which
    ``marshal`` can keep: the import hook caches it and binds new probes to it on a later start
    (:meth:`spec_data`). Code made ``for_recompile`` is left unbound (``code`` is ``template``):
    on-demand recompilation binds its own probe. ``instrumented`` lists the qualified names that
    were rewritten; ``skipped`` maps each planned function that was not to the reason. ``specs``
    maps each probe's name to its :class:`FunctionSpec`; ``generated`` is stage 1's text, for
    debugging.
    """

    code: Any
    template: Any = None
    instrumented: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    specs: dict[str, FunctionSpec] = field(default_factory=dict)
    generated: str = ""

    def spec_data(self) -> tuple[tuple[str, SpecData], ...]:
        """``specs`` in the marshal-able form :func:`~otel_scope.compile_time.recorder.bind` takes."""
        return tuple((name, spec.to_data()) for name, spec in self.specs.items())


def plan_for(
    plans: Mapping[str, CapturePlan | None], qualname: str, decorators: Sequence[str] = ()
) -> CapturePlan | None:
    """The plan for ``qualname``: an exact key first, else the first matching glob key (``*``,
    ``Class.*``) in the mapping's order. A key mapped to ``None`` excludes what it matches.
    Globs skip dunders other than ``__init__``/``__call__``/context-manager methods, and property
    accessors (``decorators``: the function's decorators as written), as runtime wildcards do."""
    if qualname in plans:
        return plans[qualname]
    if wildcard_skips(qualname) or _is_property_accessor(decorators):  # one rule for both mechanisms
        return None
    for key, candidate in plans.items():
        if "*" in key and fnmatch.fnmatchcase(qualname, key):
            return candidate
    return None


def rewrite_source(
    source: str,
    filename: str,
    module_name: str,
    plans: Mapping[str, CapturePlan | None],
    *,
    probe_prefix: str = PROBE_PREFIX,
    for_recompile: bool = False,
    tree: ast.Module | None = None,
) -> RewriteResult:
    """Rewrite the functions of a module named in ``plans`` (keys are ``__qualname__`` values).

    Never raises for a module that compiles: whatever cannot be instrumented is compiled from
    the original source and listed in ``skipped`` with a one-line reason (also logged).
    ``probe_prefix`` names the probes. ``for_recompile`` makes code to take the rewritten
    functions' code objects from, not to run: no probe is made (on-demand recompilation binds
    its own) and it holds only the top-level statements around
    those functions (compiling all of a big module would be most of the cost). ``tree`` is the
    module's ``ast`` when the caller has parsed it already; it is changed.
    """
    result = RewriteResult(code=None)
    collecting = gc.isenabled()
    gc.disable()  # libcst allocates many short-lived objects: collections would cost ~15%
    try:
        _rewrite(source, tree, filename, module_name, plans, probe_prefix, for_recompile, result)
    except Exception as exc:  # a rewriter bug must not break the user's import
        reason = f"otel-scope could not rewrite {filename}: {type(exc).__name__}: {exc}"
        result.skipped.update(dict.fromkeys(result.instrumented or plans, reason))
        result.instrumented.clear()
        result.specs.clear()
        result.code = None
    finally:
        if collecting:
            gc.enable()
    if result.code is None:
        result.code = compile(source, filename, "exec", dont_inherit=True)
    result.template = result.code
    if result.specs and not for_recompile:
        result.code = bind(result.template, result.spec_data())
    skips.note_module(module_name, result.skipped)  # once per function and run, counted
    return result


def _rewrite(
    source: str,
    tree: ast.Module | None,
    filename: str,
    module_name: str,
    plans: Mapping[str, CapturePlan | None],
    probe_prefix: str,
    for_recompile: bool,
    result: RewriteResult,
) -> None:
    if tree is None:
        tree = ast.parse(source, filename)  # the module, parsed once: rewritten functions replace nodes
    roots: list[int] = []
    context = _Context(_NEWLINE_RE.split(source), plans, module_name, filename, probe_prefix, result)
    generated: list[str] = []
    for qualname, root, holder, plan in _planned_roots(tree, plans, ""):
        rewritten = _rewrite_function(context, root, qualname, plan)
        if rewritten is not None:
            holder[next(i for i, node in enumerate(holder) if node is root)] = rewritten[0]
            generated.append(rewritten[1])
            roots.append(root.lineno)
    if for_recompile:
        tree = module_part(tree, roots)
    result.code = compile(tree, filename, "exec", dont_inherit=True)
    result.generated = "\n".join(generated)


def module_part(tree: ast.Module, lines: Sequence[int]) -> ast.Module:
    """The module without the top-level functions and classes that span none of ``lines``.

    Compiled, it gives the code objects of the functions defined on those lines exactly as the
    whole module would: their classes (name mangling, ``__class__``), enclosing functions
    (closures) and futures come along, and so does every other top-level statement, since what
    the module binds changes code generation (3.11+ loads a method of an imported module with
    ``LOAD_ATTR``, not ``LOAD_METHOD``). The definitions left out are most of a big module.
    """

    def wanted(statement: ast.stmt) -> bool:
        if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return True
        first = min([statement.lineno, *(d.lineno for d in statement.decorator_list)])
        end = statement.end_lineno or statement.lineno
        return any(first <= line <= end for line in lines)

    return ast.Module([statement for statement in tree.body if wanted(statement)], [])


def _is_property_accessor(decorators: Sequence[str]) -> bool:
    """``@property``, ``@x.setter``/``getter``/``deleter``: what runtime wildcards leave alone
    (a property is an attribute read, not a call the user asked to see)."""
    return any(d == "property" or d.endswith((".setter", ".getter", ".deleter")) for d in decorators)


def _ast_decorators(fn: _Function) -> list[str]:
    return [ast.unparse(d) for d in fn.decorator_list]


def _planned_roots(
    node: ast.AST, plans: Mapping[str, CapturePlan | None], prefix: str
) -> Iterator[tuple[str, _Function, list[Any], CapturePlan]]:
    """The outermost planned functions under ``node``: qualified name, node, the list holding
    it, and its plan.

    A planned function's nested functions are rewritten with it; an unplanned function is
    searched for planned ones.
    """
    for qualname, fn, holder in _definitions(node, prefix, lambda q: plan_for(plans, q) is None):
        plan = plan_for(plans, qualname, _ast_decorators(fn))
        if plan is not None:
            yield qualname, fn, holder, plan


@dataclass
class _Context:
    """What rewriting each function of one module needs."""

    lines: list[str]
    plans: Mapping[str, CapturePlan | None]
    module_name: str
    filename: str
    probe_prefix: str
    result: RewriteResult


def _rewrite_function(
    context: _Context, root: _Function, qualname: str, plan: CapturePlan
) -> tuple[_Function, str] | None:
    """``root`` (and the planned functions inside it) rewritten, with stage 1's text; or ``None``.

    Only the function's own lines go through libcst, so the cost follows what is planned, not
    the module's size. An indented function is parsed under an ``if 1:`` header, which keeps
    every original column; ``offset`` turns the text's line numbers into the module's. A
    function stage 1 would add nothing to (see :func:`_adds_no_calls`) skips libcst: its text
    would come back unchanged, so a copy of its ``ast`` is the same tree, at a fraction of the
    cost (about four in ten functions of a package, and every one at level ``boundaries``).
    """
    lines, result = context.lines, context.result
    nested = root.col_offset > 0
    body = "\n".join(lines[root.lineno - 1 : root.end_lineno]) + "\n"
    text, offset = (f"if 1:\n{body}", root.lineno - 2) if nested else (body, root.lineno - 1)
    prefix = qualname[: len(qualname) - len(root.name)]
    originals = dict(_functions(ast.Module([root], []), prefix))
    problems: dict[tuple[str, int], str] = {}
    if any(word in text for word in _UNSAFE_WORDS) and _UNSAFE_NAMES.search(text):  # else all safe
        problems = {key: why for key, fn in originals.items() if (why := _unsafe(fn))}
    if _adds_no_calls(root, plan, text):
        problem = problems.get((qualname, root.lineno))
        if problem:
            result.skipped[qualname] = problem
            return None
        holder: ast.If | ast.Module = ast.Module([_copy(root)], [])
        spec = _new_spec(context.module_name, context.filename, qualname, root, plan)
        states = {(qualname, root.lineno): _FunctionState(plan, spec, None, frozenset(plan.lines), root)}
        generated = text
    else:
        staged = _stage_one(context, root, qualname, text, offset, prefix, originals, problems)
        if staged is None:
            return None
        holder, states, generated = staged
    specs: dict[str, FunctionSpec] = {}
    may_yield = "yield" in text  # else no function in it is a generator: none is walked for one
    for key, node, parent_body in _functions_with_parents(holder, prefix):
        state = states.get(key)
        if state is None:
            continue
        probe_name = f"{context.probe_prefix}{len(result.specs) + len(specs)}"
        try:
            _assemble(node, state, probe_name, lines, may_yield)
        except Exception as exc:
            parent_body[next(i for i, n in enumerate(parent_body) if n is node)] = originals[key]
            result.skipped[key[0]] = f"rewriting failed ({type(exc).__name__}: {exc})"
            continue
        specs[probe_name] = state.spec
    rewritten = cast(_Function, holder.body[0])
    if rewritten is originals[(qualname, root.lineno)]:  # the root itself failed: nothing inside counts
        reason = f"its enclosing function {qualname} could not be rewritten"
        result.skipped.update({spec.qualname: reason for spec in specs.values()})
        return None
    rewritten.decorator_list = root.decorator_list  # the segment starts at the def line
    result.specs.update(specs)
    result.instrumented += [spec.qualname for spec in specs.values()]
    return rewritten, generated


def _stage_one(
    context: _Context,
    root: _Function,
    qualname: str,
    text: str,
    offset: int,
    prefix: str,
    originals: Mapping[tuple[str, int], _Function],
    problems: Mapping[tuple[str, int], str],
) -> tuple[ast.If | ast.Module, dict[tuple[str, int], _FunctionState], str] | None:
    """Stage 1 on ``root``'s ``text``, parsed back into ``ast`` with the module's lines: the
    tree holding the function, the state of each function to assemble, the generated text; or
    ``None`` (the reason is in ``skipped``)."""
    result, nested = context.result, root.col_offset > 0
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        result.skipped[qualname] = f"libcst cannot parse it ({str(exc).splitlines()[0]})"
        return None
    try:
        lines_of = _statement_lines(_root_of(module, nested), root)
    except (_Disagree, ValueError, AttributeError, IndexError):
        result.skipped[qualname] = "libcst and ast read its statements differently (please report this)"
        return None
    inserter = CaptureInserter(
        context.plans,
        context.module_name,
        context.filename,
        lines_of,
        originals,
        prefix,
        problems,
        ":=" in text,
    )
    generated = module.visit(inserter).code
    result.skipped.update(inserter.skipped)
    if not inserter.functions:
        return None
    line_map = _line_map(text, generated, offset)
    if line_map is None:
        reason = "the rewritten text did not keep the original lines (please report this)"
        result.skipped.update(dict.fromkeys(inserter.order, reason))
        return None
    segment = ast.parse(generated, context.filename)
    _remap_lines(segment, line_map)
    holder: ast.If | ast.Module = cast(ast.If, segment.body[0]) if nested else segment
    return holder, inserter.functions, generated


# Statements after which, or at whose block's start, stage 1 captures the names they bind.
_BINDING = (
    ast.Assign,
    ast.AugAssign,
    ast.Import,
    ast.ImportFrom,
    ast.Delete,
    ast.For,
    ast.AsyncFor,
    ast.Match,
)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_HANDLERS = (ast.Try, ast.TryStar) if hasattr(ast, "TryStar") else (ast.Try,)


def _adds_no_calls(fn: _Function, plan: CapturePlan, text: str) -> bool:
    """Whether stage 1 leaves ``fn`` (``text``) unchanged: it would insert no recorder call and
    plan no function inside it.

    Never for a function holding a nested function or class (stage 1 plans those). Else true
    at level ``boundaries``; at ``locals``, when no line of ``fn`` is a chosen line and no
    statement of its own binds a name (assignment, ``import``, ``del``, ``for``, ``with ... as``,
    ``except ... as``, ``case``, a walrus). Conservative: a binding whose names the plan does
    not capture still sends the function through stage 1.
    """
    statements = [s for block in _statement_lists(fn) for s in block]
    if any(isinstance(s, _DEFINITIONS) for s in statements):
        return False
    if not plan.at_least("locals"):
        return True
    if plan.at_least("lines") or ":=" in text:
        return False
    end = fn.end_lineno or fn.lineno
    if any(fn.lineno <= line <= end for line in plan.lines):
        return False
    return not any(
        isinstance(s, _BINDING)
        or (isinstance(s, ast.AnnAssign) and s.value is not None)
        or (isinstance(s, (ast.With, ast.AsyncWith)) and any(i.optional_vars is not None for i in s.items))
        or (isinstance(s, _HANDLERS) and any(h.name is not None for h in s.handlers))
        for s in statements
    )


def _new_spec(
    module_name: str, filename: str, qualname: str, fn: _Function, plan: CapturePlan
) -> FunctionSpec:
    """The spec of a function about to be rewritten, its parameters read from its ``ast``."""
    arguments = fn.args
    params = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
    if arguments.vararg is not None:
        params.append(arguments.vararg.arg)
    params += [a.arg for a in arguments.kwonlyargs]
    if arguments.kwarg is not None:
        params.append(arguments.kwarg.arg)
    return FunctionSpec(
        module=module_name,
        qualname=qualname,
        filename=filename,
        def_line=fn.lineno,
        target=plan.target,
        params=tuple(params),
    )


class _Disagree(Exception):
    """libcst's statements and ast's do not pair up (never seen; the function is skipped)."""


def _root_of(module: cst.Module, nested: bool) -> cst.FunctionDef:
    """The function a segment's text holds (under its ``if 1:`` header when ``nested``)."""
    statement: cst.BaseStatement = module.body[0]
    if nested:
        statement = cast(cst.IndentedBlock, cast(cst.If, statement).body).body[0]
    if not isinstance(statement, cst.FunctionDef):
        raise _Disagree(type(statement).__name__)
    return statement


def _statement_lines(function: cst.FunctionDef, node: _Function) -> dict[int, tuple[int, int]]:
    """``id()`` of each statement, block head and one-line block of ``function`` -> its lines.

    The lines come from the module's ``ast`` (``node``, the same function), walked beside the
    libcst tree: the statements of a block pair up in order, a ``SimpleStatementLine`` taking as
    many ``ast`` statements as it has small statements. This replaces libcst's position
    metadata, which prints the whole function once more to count its lines.
    """
    out: dict[int, tuple[int, int]] = {}

    def span(first: ast.AST, last: ast.AST | None = None) -> tuple[int, int]:
        last = last or first
        return first.lineno, last.end_lineno or last.lineno  # type: ignore[attr-defined]

    def block(suite: cst.BaseSuite, body: list[ast.stmt]) -> None:
        if isinstance(suite, cst.SimpleStatementSuite):
            if len(suite.body) != len(body):
                raise _Disagree("one-line block")
            out[id(suite)] = span(body[0], body[-1])
        else:
            statements(cast(cst.IndentedBlock, suite).body, body)

    def statements(cst_body: Sequence[cst.BaseStatement], body: list[ast.stmt]) -> None:
        i = 0
        for statement in cst_body:
            if isinstance(statement, cst.SimpleStatementLine):
                group = body[i : i + len(statement.body)]
                if len(group) != len(statement.body):
                    raise _Disagree("statement line")
                out[id(statement)] = span(group[0], group[-1])
                i += len(group)
            else:
                compound(statement, body[i])
                i += 1
        if i != len(body):
            raise _Disagree("block length")

    def orelse(branch: cst.If | cst.Else | None, body: list[ast.stmt]) -> None:
        if isinstance(branch, cst.If):
            compound(branch, body[0])  # elif
        elif branch is not None:
            block(branch.body, body)

    def compound(statement: cst.BaseStatement, node: Any) -> None:
        out[id(statement)] = span(node)
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef, cst.With)):
            block(statement.body, node.body)
        elif isinstance(statement, (cst.If, cst.For, cst.While)):
            block(statement.body, node.body)
            orelse(statement.orelse, node.orelse)
        elif isinstance(statement, (cst.Try, cst.TryStar)):
            block(statement.body, node.body)
            handlers: Sequence[cst.ExceptHandler | cst.ExceptStarHandler] = statement.handlers
            for handler, ast_handler in zip(handlers, node.handlers, strict=True):
                out[id(handler)] = span(ast_handler)
                block(handler.body, ast_handler.body)
            orelse(statement.orelse, node.orelse)
            if statement.finalbody is not None:
                block(statement.finalbody.body, node.finalbody)
        elif isinstance(statement, cst.Match):
            for case, ast_case in zip(statement.cases, node.cases, strict=True):
                out[id(case)] = span(ast_case.pattern)
                block(case.body, ast_case.body)
        else:
            raise _Disagree(type(statement).__name__)

    compound(function, node)
    return out


# --- stage 1: libcst --------------------------------------------------------------------------


@dataclass
class _FunctionState:
    """A planned function while the inserter walks it."""

    plan: CapturePlan
    spec: FunctionSpec
    body: cst.BaseSuite | None  # None: the function skipped stage 1 (see _adds_no_calls)
    lines: frozenset[int]
    original: _Function | None = None  # skipped stage 1: the module's node, read, never changed

    def line_to_report(self, first: int, last: int) -> int | None:
        """The line event a statement spanning ``first..last`` gets, if any."""
        if self.plan.at_least("lines"):
            return first
        if not self.plan.at_least("locals"):
            return None
        for line in range(first, last + 1):
            if line in self.lines:
                return line
        return None


@dataclass
class _Scope:
    kind: str  # "function" or "class"
    name: str
    state: _FunctionState | None = None


# The statements (and else clauses) whose block starts with a capture of the names they bind.
_Block = TypeVar(
    "_Block",
    cst.For,
    cst.With,
    cst.ExceptHandler,
    cst.ExceptStarHandler,
    cst.MatchCase,
    cst.If,
    cst.While,
    cst.Else,
)


class CaptureInserter(cst.CSTTransformer):
    """Insert recorder calls into the functions named in a plan (stage 1, see module doc).

    After the visit, :attr:`functions` maps ``(qualname, def line)`` to the state of each
    rewritten function and :attr:`skipped` maps qualified names to the reason they were not.
    """

    def __init__(
        self,
        plans: Mapping[str, CapturePlan | None],
        module_name: str,
        filename: str,
        lines: Mapping[int, tuple[int, int]],
        originals: Mapping[tuple[str, int], _Function],
        prefix: str = "",
        problems: Mapping[tuple[str, int], str] | None = None,
        walrus: bool = True,
    ) -> None:
        super().__init__()
        self.originals = originals  # (qualname, def line) -> its ast node (for parameters)
        self.plans = plans
        self.lines = lines  # id(statement) -> its first and last line (see _statement_lines)
        self.prefix = prefix  # the qualified name around the text visited ("Class.")
        self.problems = problems or {}  # (qualname, def line) -> why it cannot be rewritten
        self.walrus = walrus  # False: the text has no ":=", so no expression is searched for one
        self.module_name = module_name
        self.filename = filename
        self.stack: list[_Scope] = []
        self.functions: dict[tuple[str, int], _FunctionState] = {}
        self.order: list[str] = []
        self.skipped: dict[str, str] = {}

    # Nodes whose insides never hold a statement or a function: not walked (most of the tree).
    # Their leave_ methods still run; what they need they read from the original node.
    _OPAQUE = (
        cst.BaseExpression,
        cst.SimpleStatementLine,
        cst.SimpleStatementSuite,
        cst.Decorator,
        cst.Parameters,
        cst.Annotation,
    )

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, self._OPAQUE):
            return False
        return super().on_visit(node)

    # -- scopes ----------------------------------------------------------------------------

    def _qualname(self, name: str) -> str:
        parts: list[str] = []
        for scope in self.stack:
            parts.append(scope.name)
            if scope.kind == "function":
                parts.append("<locals>")
        parts.append(name)
        return self.prefix + ".".join(parts)

    def _current(self) -> _FunctionState | None:
        return self.stack[-1].state if self.stack and self.stack[-1].kind == "function" else None

    def _line(self, node: cst.CSTNode) -> int:
        return self.lines[id(node)][0]

    def _last_line(self, node: cst.CSTNode) -> int:
        return self.lines[id(node)][1]

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.stack.append(_Scope("class", node.name.value))

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        self.stack.pop()
        return updated_node

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        qualname = self._qualname(node.name.value)
        decorators = [cst.Module([]).code_for_node(d.decorator) for d in node.decorators]
        plan = plan_for(self.plans, qualname, decorators)
        state = None
        if plan is not None:
            def_line = self._line(node)
            problem = self.problems.get((qualname, def_line))
            if problem:
                self.skipped[qualname] = problem
            else:
                fn = self.originals[(qualname, def_line)]
                spec = _new_spec(self.module_name, self.filename, qualname, fn, plan)
                state = _FunctionState(plan, spec, node.body, frozenset(plan.lines))
                self.functions[(qualname, def_line)] = state
                self.order.append(qualname)
        self.stack.append(_Scope("function", node.name.value, state))

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef:
        self.stack.pop()
        return updated_node

    # -- blocks ----------------------------------------------------------------------------

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        state = self._current()
        if state is None or not state.plan.at_least("locals"):
            return updated_node
        is_body = original_node is state.body
        out: list[cst.BaseStatement] = []
        for index, (old, new) in enumerate(zip(original_node.body, updated_node.body, strict=True)):
            first = self._line(old)
            simple = isinstance(old, cst.SimpleStatementLine)
            if not (is_body and index == 0 and _is_docstring(old)) and not _is_declaration(old):
                line = state.line_to_report(first, self._last_line(old) if simple else first)
                if line is not None:
                    out.append(_marked([self._call(state, Point(LINE, line), "l")], line))
            out.append(new)
            if simple:
                small_statements = cast(cst.SimpleStatementLine, old).body
                calls = [c for small in small_statements for c in self._after(state, small, first)]
                if calls:
                    out.append(_marked(calls, first))
        return updated_node.with_changes(body=out)

    def leave_SimpleStatementSuite(
        self, original_node: cst.SimpleStatementSuite, updated_node: cst.SimpleStatementSuite
    ) -> cst.SimpleStatementSuite:
        state = self._current()
        if state is None or not state.plan.at_least("locals"):
            return updated_node
        line = self._line(original_node)
        extra: list[cst.BaseSmallStatement] = []
        for index, small in enumerate(original_node.body):
            reported = state.line_to_report(line, line)
            if reported is not None and index == 0:
                extra.append(self._call(state, Point(LINE, reported, suite_key=0), "l"))
            extra.extend(self._after(state, small, line, suite_key=3 * index + 2))
        if not extra:
            return updated_node
        return updated_node.with_changes(body=[*updated_node.body, *extra])

    # -- names bound by compound statements: captured at the start of their block ---------------

    def leave_For(self, original_node: cst.For, updated_node: cst.For) -> cst.For:
        names = _target_names(original_node.target) + self._walrus(original_node.iter)
        return self._head(original_node, updated_node, names)

    def leave_With(self, original_node: cst.With, updated_node: cst.With) -> cst.With:
        names: list[str] = []
        for item in original_node.items:
            names += self._walrus(item.item)
            if item.asname is not None:
                names += _target_names(item.asname.name)
        return self._head(original_node, updated_node, names)

    def leave_ExceptHandler(
        self, original_node: cst.ExceptHandler, updated_node: cst.ExceptHandler
    ) -> cst.ExceptHandler:
        names = _target_names(original_node.name.name) if original_node.name else []
        return self._head(original_node, updated_node, names)

    def leave_ExceptStarHandler(
        self, original_node: cst.ExceptStarHandler, updated_node: cst.ExceptStarHandler
    ) -> cst.ExceptStarHandler:
        names = _target_names(original_node.name.name) if original_node.name else []
        return self._head(original_node, updated_node, names)

    def leave_MatchCase(self, original_node: cst.MatchCase, updated_node: cst.MatchCase) -> cst.MatchCase:
        collector = _PatternNames()
        original_node.pattern.visit(collector)
        names = collector.names + self._walrus(original_node.guard)
        return self._head(original_node, updated_node, names)

    def leave_If(self, original_node: cst.If, updated_node: cst.If) -> cst.If:
        names = self._walrus(original_node.test)
        node = self._head(original_node, updated_node, names)
        if names and isinstance(node.orelse, cst.Else):
            node = node.with_changes(orelse=self._head(original_node, node.orelse, names))
        return node

    def leave_While(self, original_node: cst.While, updated_node: cst.While) -> cst.While:
        names = self._walrus(original_node.test)
        node = self._head(original_node, updated_node, names)
        if names and node.orelse is not None:
            node = node.with_changes(orelse=self._head(original_node, node.orelse, names))
        return node

    def _head(self, original: cst.CSTNode, updated: _Block, names: list[str]) -> _Block:
        """``updated`` with a capture of ``names`` at the start of its block."""
        state = self._current()
        if state is None:
            return updated
        names = _unique(n for n in names if state.plan.captures(n))
        if not names:
            return updated
        line = self._line(original)
        suite: cst.BaseSuite = updated.body
        if isinstance(suite, cst.IndentedBlock):
            call = self._call(state, Point(LOCALS, line, tuple(names)), "v", names)
            suite = suite.with_changes(body=[_marked([call], line), *suite.body])
        elif isinstance(suite, cst.SimpleStatementSuite):
            call = self._call(state, Point(LOCALS, line, tuple(names), suite_key=-1), "v", names)
            suite = suite.with_changes(body=[*suite.body, call])
        return updated.with_changes(body=suite)

    # -- helpers -----------------------------------------------------------------------------

    def _after(
        self,
        state: _FunctionState,
        small: cst.BaseSmallStatement,
        line: int,
        suite_key: int | None = None,
    ) -> list[cst.BaseSmallStatement]:
        """Recorder calls that follow one small statement (assignments and ``del``)."""
        if isinstance(small, cst.Del):
            names = _unique(n for n in _target_names(small.target) if state.plan.captures(n))
            if not names:
                return []
            return [self._call(state, Point(DELETE, line, tuple(names), suite_key=suite_key), "d")]
        if isinstance(small, cst.Return):
            return []  # a walrus in a return value cannot be captured after the return
        names = _unique(n for n in _assigned_names(small) + self._walrus(small) if state.plan.captures(n))
        if not names:
            return []
        return [self._call(state, Point(LOCALS, line, tuple(names), suite_key=suite_key), "v", names)]

    def _walrus(self, node: cst.CSTNode | None) -> list[str]:
        return _walrus_names(node) if self.walrus else []

    def _call(self, state: _FunctionState, point: Point, method: str, names: Sequence[str] = ()) -> cst.Expr:
        index = state.spec.add(point)
        args = [cst.Arg(cst.Integer(str(index))), *(cst.Arg(cst.Name(n)) for n in names)]
        return cst.Expr(cst.Call(cst.Attribute(cst.Name(RECORDER), cst.Name(method)), args))


def _marked(calls: list[cst.BaseSmallStatement], line: int) -> cst.SimpleStatementLine:
    """A new line holding ``calls``, marked as belonging to original line ``line``."""
    return cst.SimpleStatementLine(
        body=calls,
        trailing_whitespace=cst.TrailingWhitespace(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(f"{MARKER}{line}")
        ),
    )


def _unique(names: Iterator[str] | list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _is_docstring(statement: cst.BaseStatement) -> bool:
    if not isinstance(statement, cst.SimpleStatementLine) or not statement.body:
        return False
    first = statement.body[0]
    return isinstance(first, cst.Expr) and isinstance(first.value, (cst.SimpleString, cst.ConcatenatedString))


def _is_declaration(statement: cst.BaseStatement) -> bool:
    """``global``/``nonlocal``: no code, so no line event either."""
    return isinstance(statement, cst.SimpleStatementLine) and all(
        isinstance(small, (cst.Global, cst.Nonlocal)) for small in statement.body
    )


def _target_names(node: cst.BaseExpression | cst.BaseAssignTargetExpression) -> list[str]:
    """Plain names bound by an assignment target (attributes and subscripts are not locals)."""
    if isinstance(node, cst.Name):
        return [node.value]
    if isinstance(node, (cst.Tuple, cst.List)):
        return [n for element in node.elements for n in _target_names(element.value)]
    if isinstance(node, cst.StarredElement):
        return _target_names(node.value)
    return []


class _WalrusNames(cst.CSTVisitor):
    """Targets of ``:=`` in an expression, comprehensions included (they bind in the function)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False  # a walrus in a lambda binds in the lambda

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self.names += _target_names(node.target)


def _walrus_names(node: cst.CSTNode | None) -> list[str]:
    if node is None:
        return []
    collector = _WalrusNames()
    node.visit(collector)
    return collector.names


class _PatternNames(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def visit_MatchAs(self, node: cst.MatchAs) -> None:
        if node.name is not None:
            self.names.append(node.name.value)

    def visit_MatchStar(self, node: cst.MatchStar) -> None:
        if node.name is not None:
            self.names.append(node.name.value)

    def visit_MatchMapping(self, node: cst.MatchMapping) -> None:
        if node.rest is not None:
            self.names.append(node.rest.value)


def _assigned_names(small: cst.BaseSmallStatement) -> list[str]:
    names: list[str] = []
    if isinstance(small, cst.Assign):
        for target in small.targets:
            names += _target_names(target.target)
    elif isinstance(small, cst.AnnAssign):
        if small.value is not None:
            names += _target_names(small.target)
    elif isinstance(small, cst.AugAssign):
        names += _target_names(small.target)
    elif isinstance(small, cst.Import):
        for alias in small.names:
            if alias.asname is not None:
                names += _target_names(alias.asname.name)
            else:
                names.append(cst.Module([]).code_for_node(alias.name).split(".")[0])
    elif isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
        for alias in small.names:
            if alias.asname is not None:
                names += _target_names(alias.asname.name)
            else:
                names.append(cst.Module([]).code_for_node(alias.name))
    return names


_IDENTIFIERS = ("id", "arg", "attr", "name", "asname")  # the ast fields that hold a name
_OTHER_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _unsafe(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Why ``fn`` cannot be rewritten safely (see ``_FRAME_READERS``), or ``""``.

    Reads ``fn``'s own scope in source order (nested functions, classes and lambdas are
    theirs), on the ``ast`` the module was parsed into: much cheaper than a libcst visit.
    """
    stack: list[ast.AST] = [fn]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name in _FRAME_READERS or (name == "vars" and not node.args and not node.keywords):
                return f"it calls {name}(), which would see the recorder's local"
        elif isinstance(node, ast.Attribute) and node.attr in _FRAME_ATTRIBUTES:
            return f"it uses .{node.attr}, which would see the recorder's local"
        names = [getattr(node, field, None) for field in _IDENTIFIERS]
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            names += node.names
        reserved = next((n for n in names if isinstance(n, str) and n.startswith("_otel_scope_")), None)
        if reserved is not None:
            return f"it already uses the reserved name {reserved}"
        children = [c for c in ast.iter_child_nodes(node) if not isinstance(c, _OTHER_SCOPES)]
        stack.extend(reversed(children))
    return ""


# --- between the stages: lines ----------------------------------------------------------------


class _LineMap:
    """Generated line (1-based) -> original line, plus column maps for lines libcst respaced.

    libcst's round trip is not always exact about blanks (``except (A, B) :`` comes back as
    ``except (A, B):``). Such a line has the same non-blank characters in the same order, so its
    columns map exactly; anything else is drift, and the module is left uninstrumented.
    """

    def __init__(self) -> None:
        self.lines = [0]
        self.columns: dict[int, tuple[list[int], list[int]]] = {}

    def start(self, line: int, col: int) -> int:
        mapped = self.columns.get(line)
        if mapped is None:
            return col
        generated, original = mapped
        k = bisect.bisect_left(generated, col)
        return original[k] if k < len(original) else (original[-1] + 1 if original else col)

    def end(self, line: int, col: int) -> int:
        mapped = self.columns.get(line)
        if mapped is None:
            return col
        generated, original = mapped
        k = bisect.bisect_left(generated, col)
        return original[k - 1] + 1 if k > 0 else 0


def _blank_free_offsets(text: str) -> list[int]:
    return [i for i, byte in enumerate(text.encode()) if byte not in b" \t\x0c"]


def _line_map(source: str, generated: str, offset: int = 0) -> _LineMap | None:
    """Map generated lines back to the original ones; ``None`` if the text drifted.

    Unmarked generated lines must be the original lines, in order and unchanged (a one-line
    block may have recorder calls appended after its last statement; blanks may differ, see
    :class:`_LineMap`).
    """
    original = _NEWLINE_RE.split(source)
    result = _LineMap()
    next_original = 0
    for text in _NEWLINE_RE.split(generated):
        expected = original[next_original] if next_original < len(original) else None
        match = _MARKER_RE.search(text)
        if match is not None and text != expected:
            result.lines.append(int(match.group(1)))
            continue
        if expected is None:
            return None
        if text != expected and not (RECORDER in text and text.startswith(_code_part(expected))):
            ours, theirs = text, expected
            if RECORDER in text:  # calls appended to a one-line block: compare what precedes them
                ours, theirs = text.split(f"; {RECORDER}.", 1)[0], _code_part(expected)
            if _squeeze(ours) != _squeeze(theirs):
                return None
            result.columns[len(result.lines)] = (_blank_free_offsets(ours), _blank_free_offsets(theirs))
        next_original += 1
        result.lines.append(next_original + offset)
    return result if next_original == len(original) else None


def _squeeze(text: str) -> str:
    return "".join(text.split())


def _code_part(line: str) -> str:
    """``line`` without a trailing comment (a heuristic: enough to check an appended call)."""
    return line.split("#", 1)[0].rstrip()


def _remap_lines(tree: ast.AST, line_map: _LineMap) -> None:
    """Give every node of a stage-1 segment the module's lines (and columns, see
    :class:`_LineMap`), and a valid range.

    A range would come out backwards only where a node ends on a marked line that names a line
    before the node's start, or is empty on a respaced line. Stage 1 writes neither (a marker
    names a line of the block it sits in, which comes after the block's header; ``ast.parse``
    makes no empty node), but 3.11+ ``compile`` refuses such a range, so its end is moved up to
    its start, in this same walk. Nothing else needs the check: a range from ``ast.parse`` runs
    from a first token to a last one, and what stage 2 adds has no line (``-1``), one line and
    no column (the entry test), or a copy of a remapped node's range.
    """
    lines = line_map.lines
    respaced = line_map.columns
    node: Any  # positions are read only where _attributes lists them (ast.AST declares none)
    for node in ast.walk(tree):
        if "lineno" in node._attributes:
            start, end = node.lineno, getattr(node, "end_lineno", None)
            col, end_col = node.col_offset, getattr(node, "end_col_offset", None)
            if start in respaced:
                node.col_offset = col = line_map.start(start, col)
            if end is not None and end in respaced and end_col is not None:
                node.end_col_offset = end_col = line_map.end(end, end_col)
            node.lineno = first = lines[start]
            if end is None or lines[end] < first:
                node.end_lineno = first
                node.end_col_offset = max(col, end_col or 0)
            else:
                node.end_lineno = lines[end]
                if lines[end] == first and (end_col or 0) < col:
                    node.end_col_offset = col


_Function = ast.FunctionDef | ast.AsyncFunctionDef
_Node = TypeVar("_Node", bound=ast.AST)


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[tuple[str, int], _Function]]:
    for key, node, _parent in _functions_with_parents(tree, prefix):
        yield key, node


def _functions_with_parents(
    tree: ast.AST, prefix: str = ""
) -> Iterator[tuple[tuple[str, int], _Function, list[Any]]]:
    """Every function with its ``(qualname, def line)`` key and the list that holds it.

    Inner functions come before the functions that contain them.
    """
    for qualname, fn, holder in _definitions(tree, prefix, lambda _q: True):
        yield (qualname, fn.lineno), fn, holder


def _definitions(
    node: ast.AST, prefix: str, into: Callable[[str], bool]
) -> Iterator[tuple[str, _Function, list[Any]]]:
    """Every function under ``node``, inner ones first, with its qualified name and the list
    holding it; one for which ``into(qualname)`` is false is not walked into. Only statements
    are walked: a ``def`` is always one."""
    for _name, value in ast.iter_fields(node):
        if not isinstance(value, list):
            continue
        for child in value:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + child.name
                if into(qualname):
                    yield from _definitions(child, qualname + ".<locals>.", into)
                yield qualname, child, value
            elif isinstance(child, ast.ClassDef):
                yield from _definitions(child, prefix + child.name + ".", into)
            elif isinstance(child, (ast.stmt, ast.excepthandler)) or type(child).__name__ == _MATCH_CASE:
                yield from _definitions(child, prefix, into)


# --- stage 2: ast ------------------------------------------------------------------------------

_MATCH_CASE = "match_case"  # ast.match_case exists from 3.10 on; compared by name for clarity
_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Lambda,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def _own(node: ast.AST) -> Iterator[ast.AST]:
    """Nodes of ``node``'s own scope: nested functions, classes, lambdas and comprehensions excluded."""
    for child in ast.iter_child_nodes(node):
        yield child
        if not isinstance(child, _SCOPES):
            yield from _own(child)


def _statement_lists(node: ast.AST) -> Iterator[list[ast.stmt]]:
    """Every statement list of ``node``'s own scope (``node``'s body included)."""
    stack = [node]
    while stack:
        current = stack.pop()
        for name in ("body", "orelse", "finalbody"):
            value = getattr(current, name, None)
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                yield value
        for child in ast.iter_child_nodes(current):
            is_block = isinstance(child, (ast.stmt, ast.excepthandler)) or type(child).__name__ == _MATCH_CASE
            if is_block and not isinstance(child, _SCOPES):
                stack.append(child)


def _probe_index(statement: ast.stmt) -> int | None:
    """The point index of a recorder call statement inserted by stage 1, else ``None``."""
    if not isinstance(statement, ast.Expr):
        return None
    call = statement.value
    if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == RECORDER
        and call.args
        and isinstance(call.args[0], ast.Constant)
    ):
        return cast(int, call.args[0].value)  # stage 1 writes the index as an int constant
    return None


def _place(node: _Node, line: int, col: int = -1) -> _Node:
    """Give ``node`` and everything under it one position (``-1``: no line at all)."""
    child: Any  # positions are set only where _attributes lists them (ast.AST declares none)
    for child in ast.walk(node):
        if "lineno" in child._attributes:
            child.lineno = child.end_lineno = line
            child.col_offset = child.end_col_offset = col
    return node


def _place_shallow(node: ast.stmt) -> None:
    """No line for ``node`` itself (its children keep theirs)."""
    node.lineno = node.end_lineno = node.col_offset = node.end_col_offset = -1


def _rec(method: str, *args: ast.expr) -> ast.Call:
    return ast.Call(
        func=ast.Attribute(value=ast.Name(RECORDER, ast.Load()), attr=method, ctx=ast.Load()),
        args=list(args),
        keywords=[],
    )


def _wrap(method: str, args: list[ast.expr], value: ast.expr, like: ast.AST) -> ast.Call:
    """``_otel_scope_r.<method>(*args)``, wrapping ``value``, with ``like``'s position.

    ``like`` is the construct whose own instruction follows the wrapper's call (the ``return``,
    the ``yield``, or the wrapped call itself), so the call adds no line event; the recorder
    and any constant are loaded at the start of ``value``, where evaluation begins anyway.
    """
    call = _rec(method, *args)
    ast.copy_location(call, like)
    func = cast(ast.Attribute, call.func)  # as _rec built it
    for synthetic in (func, func.value, *(a for a in args if a is not value)):
        ast.copy_location(synthetic, value)
        synthetic.end_lineno, synthetic.end_col_offset = synthetic.lineno, synthetic.col_offset
    return call


def _assemble(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    state: _FunctionState,
    probe: str,
    lines: list[str],
    may_yield: bool,
) -> None:
    """Turn ``fn`` (already holding stage 1's calls) into the dispatching form (module doc).

    ``may_yield`` false: the text ``fn`` comes from has no ``yield``, so ``fn`` is no generator.
    """
    spec, plan = state.spec, state.plan
    body = list(fn.body)
    doc: list[ast.stmt] = []
    if body and _is_docstring_node(body[0]):
        doc = [body.pop(0)]
    holder = ast.Module(body=body, type_ignores=[])
    hoisted = _hoist_declarations(holder)
    if state.original is None:  # a function that skipped stage 1 has no calls to order or place
        for statements in _statement_lists(holder):
            _order_suite(statements, spec.points)
            for statement in statements:
                if _probe_index(statement) is not None:
                    _place(statement, -1)  # no line of its own: adds no line event
    if not holder.body:
        holder.body = [ast.Pass()]
        _place(holder.body[0], -1)
    if state.original is not None and not hoisted and body:
        # Skipped stage 1 and declares nothing: ``fn`` is a copy of the module's node, so its
        # untouched body is the module's own, which nothing below changes (no second copy).
        plain = ast.Module(body=state.original.body[len(doc) :], type_ignores=[])
    else:
        plain = _copy(holder)
        _strip(plain)
    first_line = _first_line(plain.body, fn)  # compile() reads the nodes, never changes them
    spec.generator = may_yield and any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own(holder))
    async_generator = spec.generator and isinstance(fn, ast.AsyncFunctionDef)
    _Boundary(spec, plan, lines, async_generator).visit(holder)

    instrumented: list[ast.stmt] = []
    if spec.params:
        args = _place(ast.Expr(_rec("a", *[ast.Name(p, ast.Load()) for p in spec.params])), -1)
        instrumented.append(args)
    instrumented += holder.body
    # "with recorder:" rather than try/except/finally: an exception leaving the body is re-raised
    # by the with statement's own cleanup, which restores the frame's position to the failing
    # instruction (a bare "raise" in a handler would show no line in pdb's --Return--).
    guarded = ast.With(items=[ast.withitem(ast.Name(RECORDER, ast.Load()))], body=instrumented)
    _place_shallow(guarded)
    _place(guarded.items[0].context_expr, -1)
    test = ast.BoolOp(
        op=ast.Or(),
        values=[
            ast.UnaryOp(ast.Not(), _probe_attribute(probe, "on")),
            _refused_test(probe),
            _left_out_test(probe),
            ast.Compare(
                left=ast.NamedExpr(
                    target=ast.Name(RECORDER, ast.Store()),
                    value=ast.Call(_probe_attribute(probe, "enter"), [ast.Name(RECORDER, ast.Load())], []),
                ),
                ops=[ast.Is()],
                comparators=[ast.Constant(None)],
            ),
        ],
    )
    _place(test, first_line)
    dispatch = ast.If(test=test, body=plain.body, orelse=[guarded])
    _place_shallow(dispatch)
    fn.body = [*doc, *hoisted, dispatch]


def _probe_attribute(probe: str, *names: str) -> ast.expr:
    """``<probe>.<name>.<name>...``, read: the probe is a constant of the function's code (the
    module doc), a placeholder string until :func:`~otel_scope.compile_time.recorder.bind`."""
    node: ast.expr = ast.Constant(PLACEHOLDER + probe)
    for name in names:
        node = ast.Attribute(node, name, ast.Load())
    return node


def _refused_test(probe: str) -> ast.expr:
    """``p.refused.provider is p.providers.<global> and p.refused.context is p.current.get()``: the
    span core said no under this very provider and context already (see ``Probe``), checked
    with no call into otel-scope. The provider first: a probe that never skips (its refusal is
    ``NO_REFUSAL``) then pays three attribute reads, not the context read too."""
    return ast.BoolOp(
        op=ast.And(),
        values=[
            ast.Compare(
                left=_probe_attribute(probe, "refused", "provider"),
                ops=[ast.Is()],
                comparators=[_probe_attribute(probe, "providers", PROVIDER_GLOBAL)],
            ),
            ast.Compare(
                left=_probe_attribute(probe, "refused", "context"),
                ops=[ast.Is()],
                comparators=[ast.Call(_probe_attribute(probe, "current", "get"), [], [])],
            ),
        ],
    )


def _left_out_test(probe: str) -> ast.expr:
    """``(_otel_scope_r := p.gate.tick()) < p.gate.next_check``: the call sampler left this call
    out, decided by one C call that also counts it (see ``otel_scope.capture.sampling``). The
    call's number stays in the recorder's local for ``p.enter(_otel_scope_r)``, which the test
    calls only when this one says no."""
    return ast.Compare(
        left=ast.NamedExpr(
            target=ast.Name(RECORDER, ast.Store()),
            value=ast.Call(_probe_attribute(probe, "gate", "tick"), [], []),
        ),
        ops=[ast.Lt()],
        comparators=[_probe_attribute(probe, "gate", "next_check")],
    )


def _copy(node: _Node) -> _Node:
    """A deep copy of an ``ast`` tree: pickling is C code, about twice as fast as ``deepcopy``."""
    copied: _Node = pickle.loads(pickle.dumps(node, pickle.HIGHEST_PROTOCOL))
    return copied


def _is_docstring_node(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _first_line(body: list[ast.stmt], fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The line of the first instruction the original body executes.

    The entry test takes this line, so the first line event is the one the original emits. It
    is not always the first statement's line (``x = (\n a)`` starts on its second line;
    ``'_%s' % (a,)`` on 3.11+ starts with a constant that has no line, so on the ``def`` line),
    so unless :func:`_leading_line` can read it off the first statement (most functions), the
    untouched body is compiled alone and its first instruction asked.
    """
    line = _leading_line(body[0])
    return line if line is not None else _compiled_first_line(body, fn)


def _compiled_first_line(body: list[ast.stmt], fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """:func:`_first_line` the slow way: the body compiled alone, its first instruction read."""
    fallback = next((s.lineno for s in body if s.lineno > 0), fn.lineno)
    alone: _Function = ast.FunctionDef(
        name="_",
        args=ast.arguments([], [], None, [], [], None, []),
        body=body,
        decorator_list=[],
        returns=None,
    )
    if isinstance(fn, ast.AsyncFunctionDef):
        alone = ast.AsyncFunctionDef(**{k: getattr(alone, k) for k in alone._fields if hasattr(alone, k)})
    ast.copy_location(alone, fn)
    try:
        module = compile(ast.Module([alone], []), "<first line>", "exec", dont_inherit=True)
    except SyntaxError:  # e.g. "nonlocal" without its enclosing function
        return fallback
    code = next(c for c in module.co_consts if isinstance(c, CodeType))
    for instruction in dis.get_instructions(code):
        if instruction.opname in _PROLOGUE:
            continue
        line = _instruction_line(instruction)
        if line is not None and line > 0:
            return line
    return fallback


def _leading_line(statement: ast.stmt) -> int | None:
    """The line of ``statement``'s first instruction, when its ``ast`` proves it; else ``None``.

    A statement runs its head first: the value of an assignment, ``return`` or ``raise``, the
    iterable of a ``for``, the test of an ``if``, the target read by ``x += 1``. Down a head,
    the first instruction is the load of its leftmost operand (:func:`_first_operand`); each
    node on the way starts at or before that operand and at or after the statement, so when the
    operand is on the statement's first line, so is every instruction before it. A name (not
    ``__debug__``, which is folded) is always loaded. A constant may be folded or dropped (a
    constant test, ``1 and x``), so it counts only as a value in a simple statement on one
    line, where whatever replaces it is on that line too. Everything else is left to the
    compiler: docstrings and bare constants, which compile to nothing; ``pass``; ``assert``,
    gone under ``-O``; ``while``; definitions, whose decorators run first; comprehensions,
    f-strings and ``%`` formatting, which 3.11+ turns into an f-string whose first part has no
    line.
    """
    first = statement.lineno
    if first <= 0:
        return None  # one of ours (a pass standing for a removed call)
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return first  # the level's LOAD_CONST: the statement's own instruction
    head: ast.expr | None = None
    if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.Return)):
        head = statement.value
    elif isinstance(statement, ast.Raise):
        head = statement.exc
    elif isinstance(statement, ast.AugAssign):
        head = statement.target
    elif isinstance(statement, ast.Delete):
        head = statement.targets[0]
    elif isinstance(statement, ast.Expr) and isinstance(
        statement.value, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom)
    ):
        head = statement.value
    elif isinstance(statement, ast.If):
        head = statement.test
    elif isinstance(statement, ast.For):
        head = statement.iter
    elif isinstance(statement, ast.With):
        head = statement.items[0].context_expr
    if head is None:  # "return" or "raise" alone: its own instruction; else no plain head
        return first if isinstance(statement, (ast.Return, ast.Raise)) else None
    operand = _first_operand(head)
    if operand is None or operand.lineno != first:
        return None
    simple = not isinstance(statement, (ast.If, ast.For, ast.With))
    if isinstance(operand, ast.Name) or (simple and statement.end_lineno == first):
        return first
    return None


def _is_percent(node: ast.BinOp) -> bool:
    """``a % b``: 3.11+ may turn it into an f-string (see :func:`_leading_line`)."""
    return isinstance(node.op, ast.Mod)


def _first_operand(node: ast.expr) -> ast.expr | None:
    """The operand ``node`` evaluates first: a name, a constant or a bare ``yield`` (which loads
    ``None`` where it stands); ``None`` for anything whose first instruction is not so plain."""
    step: ast.expr | None = node
    while step is not None:
        if isinstance(step, ast.Name):
            return step if step.id != "__debug__" else None
        if isinstance(step, ast.Constant) or (isinstance(step, ast.Yield) and step.value is None):
            return step
        if isinstance(step, (ast.Attribute, ast.Subscript, ast.Await, ast.Yield, ast.YieldFrom)):
            step = step.value
        elif isinstance(step, ast.Call):
            step = step.func
        elif isinstance(step, ast.Compare) or (isinstance(step, ast.BinOp) and not _is_percent(step)):
            step = step.left
        elif isinstance(step, ast.BoolOp):
            step = step.values[0]
        elif isinstance(step, ast.UnaryOp):
            step = step.operand
        else:
            return None
    return None


_PROLOGUE = frozenset({"RESUME", "RETURN_GENERATOR", "POP_TOP", "MAKE_CELL", "COPY_FREE_VARS", "GEN_START"})


def _instruction_line(instruction: dis.Instruction) -> int | None:
    positions = getattr(instruction, "positions", None)  # 3.11+
    if positions is not None:
        return cast("int | None", positions.lineno)
    return instruction.starts_line


def _order_suite(statements: list[ast.stmt], points: list[Point]) -> None:
    """Move calls appended to a one-line block to where they belong (see :class:`Point`)."""
    keyed: list[tuple[float, ast.stmt]] = []
    original = 0
    moved = False
    for statement in statements:
        index = _probe_index(statement)
        key = points[index].suite_key if index is not None else None
        if index is None:
            keyed.append((3 * original + 1, statement))
            original += 1
        elif key is not None:
            keyed.append((key, statement))
            moved = True
        else:
            keyed.append((3 * original - 0.5, statement))
    if moved:
        keyed.sort(key=lambda item: item[0])
        statements[:] = [statement for _key, statement in keyed]


def _hoist_declarations(holder: ast.Module) -> list[ast.stmt]:
    """Remove ``global``/``nonlocal`` from the body and return them, to go first.

    Both copies of the body sit in one function; a declaration in the second copy would come
    after the first copy's assignments, which is a SyntaxError.
    """
    hoisted: list[ast.stmt] = []
    for statements in list(_statement_lists(holder)):
        kept = []
        for statement in statements:
            if isinstance(statement, (ast.Global, ast.Nonlocal)):
                hoisted.append(statement)
            else:
                kept.append(statement)
        if len(kept) != len(statements):
            if not kept and statements is not holder.body:
                kept = [_place(ast.Pass(), -1)]
            statements[:] = kept
    return hoisted


def _strip(holder: ast.Module) -> None:
    """Remove stage 1's calls: what is left is the original body."""
    for statements in list(_statement_lists(holder)):
        kept = [s for s in statements if _probe_index(s) is None]
        statements[:] = kept or [_place(ast.Pass(), -1)]


class _Boundary(ast.NodeTransformer):
    """Wrap returns, yields and (level ``expressions``) calls of one function's own scope."""

    def __init__(
        self, spec: FunctionSpec, plan: CapturePlan, lines: list[str], async_generator: bool
    ) -> None:
        self.spec = spec
        self.plan = plan
        self.lines_of_source = lines  # the module's lines, for the text of captured expressions
        self.async_generator = async_generator
        self.expressions = plan.at_least("expressions")
        self.lines = frozenset(plan.lines)

    def _segment(self, node: ast.expr) -> str:
        """The source text of ``node`` (ast columns are UTF-8 byte offsets)."""
        lines = [line.encode() for line in self.lines_of_source[node.lineno - 1 : node.end_lineno]]
        if not lines:
            return ""
        if len(lines) == 1:
            return lines[0][node.col_offset : node.end_col_offset].decode(errors="replace")
        lines[0] = lines[0][node.col_offset :]
        lines[-1] = lines[-1][: node.end_col_offset]
        return b"\n".join(lines).decode(errors="replace")

    def _skip(self, node: ast.AST) -> ast.AST:
        return node  # another scope: leave it alone

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _skip
    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _skip

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if node.value is None:
            if self.async_generator:
                return node  # "return <value>" is a SyntaxError in an async generator
            value: ast.expr = ast.copy_location(ast.Constant(None), node)
        else:
            value = node.value
        index = self.spec.add(Point(RETURN, node.lineno))
        node.value = _wrap("ret", [ast.Constant(index), value], value, node)
        return node

    def visit_Yield(self, node: ast.Yield) -> ast.AST:
        self.generic_visit(node)
        value = node.value if node.value is not None else ast.copy_location(ast.Constant(None), node)
        node.value = _wrap("suspend", [value], value, node)
        return _wrap("resume", [node], node, node)

    def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.AST:
        self.generic_visit(node)
        node.value = _wrap("suspend", [node.value], node.value, node)
        return _wrap("resume", [node], node, node)

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if _probe_index(node) is not None:
            return node
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not self.expressions or (self.lines and node.lineno not in self.lines):
            return node
        func = node.func
        if isinstance(func, ast.Name) and func.id == "super":
            return node
        text = self._segment(node)
        if len(text) > 200:
            text = text[:199] + "…"
        index = self.spec.add(Point(EXPRESSION, node.lineno, (), text))
        return _wrap("x", [ast.Constant(index), node], node, node)
