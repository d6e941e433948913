/* The --where language of otel_scope.timeline.query, for the self-contained HTML file (no server).
 *
 * The same grammar and the same reading of values as the Python module, so the file and the
 * server find the same steps: comparisons < <= > >= == != (chainable), and/or/not, parentheses,
 * numbers, 'strings', None, True, False and dotted names. Captured values are safe reprs (text),
 * read back as the number, None, boolean or string they spell. Nothing is ever evaluated as code.
 * A step matches when it set a name the condition reads and the condition holds on everything
 * its call recorded up to it (view/search.py says why).
 */
"use strict";
(function (global) {
  const ACCEPTED = "accepted: NAME OP VALUE (OP is < <= > >= == !=), and/or/not, parentheses, " +
    "numbers, 'strings', None, True, False; NAME is a captured variable, argument or 'return'";
  const TOKEN = /\s+|(-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)|('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)|(<=|>=|==|!=|<|>)|([()])/y;
  const CONSTANTS = { None: null, True: true, False: false };
  const KEYWORDS = new Set(["and", "or", "not"]);
  const MISSING = Symbol("missing");
  const NUMBER = /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;
  const MAX_LITERAL = 4096;

  class QueryError extends Error {}

  function pyRepr(text) {
    // Python's repr of a str, so messages read exactly as the terminal's (common cases).
    const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
    let body = text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\t/g, "\\t");
    if (quote === "'") body = body.replace(/'/g, "\\'");
    return quote + body + quote;
  }

  function unquote(text) {
    // A Python string literal's simple escapes; anything fancier stays as written.
    const body = text.slice(1, -1);
    const map = { n: "\n", t: "\t", r: "\r", "\\": "\\", "'": "'", '"': '"', 0: "\0" };
    return body.replace(/\\(.)/g, (m, c) => (c in map ? map[c] : m));
  }

  function coerce(value) {
    if (typeof value !== "string") return value;
    const text = value.trim();
    if (!text || text.length > MAX_LITERAL) return value;
    if (Object.prototype.hasOwnProperty.call(CONSTANTS, text)) return CONSTANTS[text];
    if ((text[0] === "'" || text[0] === '"') && text.length > 1 && text[text.length - 1] === text[0]) {
      return unquote(text);
    }
    if (NUMBER.test(text)) return Number(text);
    return value;
  }

  const isNumber = (v) => typeof v === "number";
  function compare(op, a, b) {
    if (a === MISSING || b === MISSING) return false;
    if (op === "==" || op === "!=") {
      const equal = isNumber(a) === isNumber(b) ? a === b : false;
      return op === "==" ? equal : !equal;
    }
    if ((isNumber(a) && isNumber(b)) || (typeof a === "string" && typeof b === "string")) {
      return { "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b }[op];
    }
    return false;
  }

  function tokenise(text) {
    const tokens = [];
    TOKEN.lastIndex = 0;
    while (TOKEN.lastIndex < text.length) {
      const at = TOKEN.lastIndex;
      const m = TOKEN.exec(text);
      if (!m) {
        throw new QueryError(`where ${pyRepr(text)}: cannot read ${pyRepr(text.slice(at, at + 12))} at column ${at + 1}; ${ACCEPTED}`);
      }
      const kind = m[1] ? "number" : m[2] ? "string" : m[3] ? "name" : m[4] ? "op" : m[5] ? "paren" : "space";
      if (kind !== "space") tokens.push({ kind, text: m[0], column: at });
    }
    return tokens;
  }

  function compileWhere(text) {
    const tokens = tokenise(text);
    const names = new Set();
    let pos = 0;
    const peek = () => tokens[pos];
    const fail = (what, token) => {
      const where = token ? `at column ${token.column + 1}` : "at the end";
      return new QueryError(`where ${pyRepr(text)}: ${what} ${where}; ${ACCEPTED}`);
    };
    const keyword = (word) => {
      const t = peek();
      if (t && t.kind === "name" && t.text === word) { pos += 1; return true; }
      return false;
    };
    function operand() {
      const t = peek();
      if (!t) throw fail("the condition ends too soon: expected a name or a value");
      pos += 1;
      if (t.kind === "number") { const n = Number(t.text); return () => n; }
      if (t.kind === "string") { const s = unquote(t.text); return () => s; }
      if (t.kind === "name" && t.text in CONSTANTS) { const c = CONSTANTS[t.text]; return () => c; }
      if (t.kind === "name" && !KEYWORDS.has(t.text)) {
        names.add(t.text);
        return (env) => (Object.prototype.hasOwnProperty.call(env, t.text) ? coerce(env[t.text]) : MISSING);
      }
      pos -= 1;
      throw fail(`expected a name or a value, not ${pyRepr(t.text)}`, t);
    }
    function comparison() {
      const operands = [operand()];
      const ops = [];
      while (peek() && peek().kind === "op") { ops.push(peek().text); pos += 1; operands.push(operand()); }
      if (!ops.length) throw fail("expected a comparison operator (< <= > >= == !=)", peek());
      return (env) => {
        const v = operands.map((o) => o(env));
        return ops.every((op, i) => compare(op, v[i], v[i + 1]));
      };
    }
    function not() {
      if (keyword("not")) { const inner = not(); return (env) => !inner(env); }
      const t = peek();
      if (t && t.text === "(") {
        pos += 1;
        const inner = or();
        if (!peek() || peek().text !== ")") throw fail("expected ')'", peek());
        pos += 1;
        return inner;
      }
      return comparison();
    }
    function and() {
      const parts = [not()];
      while (keyword("and")) parts.push(not());
      return parts.length === 1 ? parts[0] : (env) => parts.every((p) => p(env));
    }
    function or() {
      const parts = [and()];
      while (keyword("or")) parts.push(and());
      return parts.length === 1 ? parts[0] : (env) => parts.some((p) => p(env));
    }
    if (!tokens.length) throw new QueryError(`where ${pyRepr(text)}: the condition is empty; ${ACCEPTED}`);
    const tree = or();
    if (peek()) throw fail(`unexpected ${pyRepr(peek().text)}`, peek());
    if (!names.size) throw new QueryError(`where ${pyRepr(text)}: the condition names no captured value; ${ACCEPTED}`);
    return { text, names, matches: tree };
  }

  function stepValues(step) {
    const values = Object.assign({}, step.set || {});
    if (step.kind === "state") {
      for (const [k, v] of Object.entries(step.set || {})) values[k.replace(/^self\./, "")] = v;
    }
    return values;
  }

  function callMatches(where, call) {
    const env = {};
    const found = [];
    for (const step of call.steps) {
      const values = stepValues(step);
      Object.assign(env, values);
      if (Object.keys(values).some((k) => where.names.has(k)) && where.matches(env)) {
        found.push({ call: call.id, name: call.name, step: step.index, line: step.line, t: step.t, text: step.text || "" });
      }
    }
    return found;
  }

  global.OtelScopeQuery = { compileWhere, callMatches, QueryError };
})(window);
