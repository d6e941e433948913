/* otel-scope view: lanes of components, calls as bars, messages as arrows, and one call opened
 * with its source, captured values and time travel.
 *
 * Data comes from the local server (/api/summary first, each call on demand) or, in the
 * self-contained file, from the JSON block #otel-scope-data. Every captured value is user data:
 * it is only ever set as textContent, never parsed as HTML.
 */
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  // -- where the data comes from ---------------------------------------------------------------
  function makeStore() {
    const block = document.getElementById("otel-scope-data");
    if (block) {
      const data = JSON.parse(block.textContent);
      return {
        embedded: data.embedded,
        summary: async () => data.summary,
        call: async (id) => data.calls[id] || null,
        search: async (text) => {
          const where = OtelScopeQuery.compileWhere(text);
          let matches = [];
          for (const call of Object.values(data.calls)) matches = matches.concat(OtelScopeQuery.callMatches(where, call));
          matches.sort((a, b) => a.t - b.t);
          return { query: text, count: matches.length, shown: matches.length, matches };
        },
      };
    }
    const cache = new Map();
    const getJson = async (url) => {
      const response = await fetch(url);
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
      return body;
    };
    return {
      embedded: null,
      summary: () => getJson("api/summary"),
      call: (id) => {
        if (!cache.has(id)) cache.set(id, getJson(`api/call/${encodeURIComponent(id)}`).catch(() => null));
        return cache.get(id);
      },
      search: (text) => getJson(`api/search?q=${encodeURIComponent(text)}`),
    };
  }

  // -- small helpers ---------------------------------------------------------------------------
  function fmtDuration(ns) {
    if (ns < 1e3) return `${ns} ns`;
    if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
    if (ns < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
    return `${(ns / 1e9).toFixed(2)} s`;
  }
  const fmtOffset = (ns) => `+${(ns / 1e6).toFixed(3)} ms`;
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function kvRows(table, pairs, changed) {
    table.replaceChildren();
    if (!pairs.length) { table.append(el("tr", {}, el("td", { colspan: 2, class: "dim" }, "none recorded"))); return; }
    for (const [k, v] of pairs) {
      table.append(el("tr", changed && changed.has(k) ? { class: "changed" } : {}, el("td", {}, k), el("td", {}, v)));
    }
  }
  const shortName = (name) => name.split(".").slice(-2).join(".");
  // A call the summary drew no bar for (large traces) is still named by its span ID.
  const nameOf = (id) => (callsById.has(id) ? shortName(callsById.get(id).name) : `span ${id}`);

  // -- state -----------------------------------------------------------------------------------
  const store = makeStore();
  let summary = null;
  const callsById = new Map();
  let order = []; // calls in start order, for stepping across the session
  let current = null; // the opened call's detail
  let stepIndex = 0;
  const chosenHit = new Map(); // line -> step index picked in its hit selector
  let zoom = 1; // horizontal magnification of the time axis (the lanes scroll sideways)
  function setZoom(next) { zoom = Math.max(1, Math.min(256, next)); if (summary) drawLanes(); }

  // -- lanes -----------------------------------------------------------------------------------
  function drawLanes() {
    const box = $("lanes");
    const calls = summary.calls;
    const work = calls.filter((c) => !c.session);
    const visible = work.length ? work : calls;
    const t0 = Math.min(...visible.map((c) => c.start));
    const t1 = Math.max(...visible.map((c) => c.end), t0 + 1);
    const labelW = 300, fit = Math.max(900, box.clientWidth || 900) - labelW - 20;
    const plotW = fit * zoom, width = labelW + plotW + 20;
    const x = (t) => labelW + Math.max(0, Math.min(plotW, ((t - t0) / (t1 - t0)) * plotW));
    const ROW = 20;
    // Rows within a lane: nested calls of the same component sit below their caller.
    const row = new Map();
    for (const c of calls) {
      let depth = 0, p = c.parent ? callsById.get(c.parent) : null;
      const seen = new Set();
      while (p && !seen.has(p.id)) { seen.add(p.id); if (p.lane === c.lane) depth += 1; p = p.parent ? callsById.get(p.parent) : null; }
      row.set(c.id, depth);
    }
    const laneTop = new Map();
    let y = 24;
    const laneRows = new Map();
    for (const c of calls) laneRows.set(c.lane, Math.max(laneRows.get(c.lane) || 0, row.get(c.id) + 1));
    for (const lane of summary.lanes) { laneTop.set(lane.id, y); y += laneRows.get(lane.id) * ROW + 12; }
    const root = svg("svg", { width, height: y + 4, role: "group", "aria-label": "Lanes of components with calls and messages" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrowhead", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z" }));
    defs.append(marker);
    root.append(defs);
    summary.lanes.forEach((lane, i) => {
      const top = laneTop.get(lane.id), h = laneRows.get(lane.id) * ROW + 12;
      const g = svg("g", { class: "lane", "data-lane": lane.id });
      g.append(svg("rect", { class: `lane-bg${i % 2 ? " odd" : ""}`, x: 0, y: top - 6, width, height: h }));
      const label = svg("text", { class: "lane-label", x: 8, y: top + 10 });
      label.textContent = lane.label.length > 42 ? "…" + lane.label.slice(-41) : lane.label;
      const title = svg("title"); title.textContent = `${lane.label} (${lane.kind}, ${lane.calls} calls)`;
      label.append(title);
      const kind = svg("text", { class: "lane-kind", x: 8, y: top + 22 }); kind.textContent = `${lane.kind} · ${lane.calls} calls`;
      g.append(label, kind);
      root.append(g);
    });
    const axis = svg("g", { class: "axis" });
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      axis.append(svg("line", { x1: x(t), x2: x(t), y1: 14, y2: y }));
      const label = svg("text", { x: x(t) + 2, y: 12 }); label.textContent = fmtOffset(t);
      axis.append(label);
    }
    root.append(axis);
    const centre = new Map();
    for (const c of calls) {
      const top = laneTop.get(c.lane) + row.get(c.id) * ROW;
      const left = x(c.start), w = Math.max(4, x(c.end) - left);
      centre.set(c.id, top + 8);
      const cls = ["bar", c.mechanism, c.session ? "session" : "", c.error ? "error" : ""].join(" ");
      const label = `${c.name}, ${fmtDuration(c.end - c.start)} at ${fmtOffset(c.start)}${c.error ? ", raised " + c.error : ""}`;
      const g = svg("g", { class: cls, tabindex: 0, role: "button", "data-call": c.id, "data-lane": c.lane, "aria-label": label });
      g.append(svg("rect", { x: left, y: top, width: w, height: 16 }));
      const title = svg("title"); title.textContent = label; g.append(title);
      if (w > 40) {
        const text = svg("text", { x: left + 4, y: top + 12 });
        const name = shortName(c.name);
        text.textContent = name.length * 6.5 > w - 6 ? name.slice(0, Math.max(1, Math.floor((w - 6) / 6.5) - 1)) + "…" : name;
        g.append(text);
      }
      g.addEventListener("click", () => openCall(c.id, 0));
      g.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); openCall(c.id, 0); } });
      root.append(g);
    }
    for (const m of summary.messages) {
      if (!m.from || !m.to || !centre.has(m.from) || !centre.has(m.to)) continue;
      const x1 = x(m.from_t), y1 = centre.get(m.from), x2 = x(m.to_t), y2 = centre.get(m.to);
      const bend = Math.max(30, Math.abs(y2 - y1) / 2);
      const path = svg("path", {
        class: "message", "data-message": m.id, "data-from": m.from, "data-to": m.to, "marker-end": "url(#arrowhead)",
        d: `M${x1},${y1} C${x1 + bend / 3},${y1 + (y2 > y1 ? bend : -bend)} ${x2 - bend / 3},${y2 + (y2 > y1 ? -bend : bend)} ${x2},${y2}`,
      });
      const title = svg("title"); title.textContent = `message #${m.id}${m.channel ? " via " + m.channel : ""}${m.summary ? ": " + m.summary : ""}`;
      path.append(title);
      root.append(path);
    }
    box.replaceChildren(root);
    $("zoom-level").textContent = `${zoom}×`;
    if (current) markSelected(current.id);
    const selected = document.querySelector(".bar.selected rect");
    if (selected) box.scrollLeft = Math.max(0, Number(selected.getAttribute("x")) - labelW - 40);
  }

  function markSelected(id) {
    for (const g of document.querySelectorAll(".bar.selected")) g.classList.remove("selected");
    const bar = document.querySelector(`.bar[data-call="${CSS.escape(id)}"]`);
    if (bar) bar.classList.add("selected");
    const msgs = new Set((current ? current.steps : []).map((s) => s.message).filter(Boolean));
    for (const p of document.querySelectorAll(".message")) p.classList.toggle("active", msgs.has(p.dataset.message));
  }

  // -- one call --------------------------------------------------------------------------------
  async function openCall(id, step, focus) {
    const detail = await store.call(id);
    const brief = callsById.get(id);
    chosenHit.clear();
    if (!detail) {
      current = null;
      $("call-title").textContent = brief ? brief.name : id;
      $("call-facts").textContent = store.embedded
        ? `This call is not embedded in this file (it holds ${store.embedded.calls} of ${store.embedded.of} calls); open the trace with otel-scope view to see it.`
        : "This call could not be loaded.";
      for (const t of ["source", "variables", "arguments", "state", "attributes"]) $(t).replaceChildren();
      $("steps").replaceChildren(); $("messages").replaceChildren(); $("result").replaceChildren();
      $("step-label").textContent = "step –"; $("step-text").textContent = "";
      markSelected(id);
      return;
    }
    current = detail;
    stepIndex = step === "last" ? detail.steps.length - 1 : Math.max(0, Math.min(step || 0, detail.steps.length - 1));
    $("call-title").textContent = detail.name;
    const facts = [`${fmtDuration(detail.end - detail.start)} at ${fmtOffset(detail.start)}`, detail.mechanism, `span ${detail.id}`];
    if (detail.dropped_captures) facts.push(`${detail.dropped_captures} captures not recorded (${detail.dropped_reason || "budget"})`);
    $("call-facts").textContent = facts.join(" · ");
    renderFacts();
    renderStepsList();
    renderStep();
    markSelected(id);
    if (focus !== false) $("call").focus({ preventScroll: true });
  }

  function renderFacts() {
    const d = current;
    kvRows($("arguments"), Object.entries(d.arguments));
    const result = $("result");
    result.replaceChildren();
    if (d.exception) {
      result.append(el("p", { class: "exception" }, `raised ${d.exception.type}: ${d.exception.message}`));
      if (d.exception.stacktrace) result.append(el("details", {}, el("summary", {}, "stack trace"), el("pre", {}, d.exception.stacktrace)));
    } else {
      result.append(el("p", {}, d.return !== null ? `returned ${d.return}` : "returned (no value recorded)"));
    }
    kvRows($("state"), d.state.map((s) => [`self.${s.attribute}`, `${s.before} → ${s.after}`]));
    const list = $("messages");
    list.replaceChildren();
    for (const m of summary.messages) {
      if (m.from === d.id && m.to) {
        list.append(el("li", {}, `sent #${m.id}${m.channel ? " via " + m.channel : ""} to `,
          el("button", { class: "link-button", type: "button", onclick: () => openCall(m.to, 0) }, nameOf(m.to))));
      }
      if (m.to === d.id && m.from) {
        list.append(el("li", {}, `received #${m.id}${m.channel ? " via " + m.channel : ""} from `,
          el("button", { class: "link-button sender", type: "button", onclick: () => openCall(m.from, 0) }, nameOf(m.from))));
      }
    }
    if (d.parent && callsById.has(d.parent)) {
      list.append(el("li", {}, "called by ", el("button", { class: "link-button", type: "button", onclick: () => openCall(d.parent, 0) }, shortName(callsById.get(d.parent).name))));
    }
    if (!list.children.length) list.append(el("li", { class: "dim" }, "none"));
    kvRows($("attributes"), Object.entries(d.attributes));
  }

  function renderStepsList() {
    const list = $("steps");
    list.replaceChildren();
    current.steps.forEach((s, i) => {
      const go = () => { stepIndex = i; chosenHit.clear(); renderStep(); };
      const item = el("li", { "data-step": i, tabindex: 0, onclick: go,
        onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); go(); } } },
        `${fmtOffset(s.t)}  ${s.line ? "L" + s.line + "  " : ""}${s.text || s.kind}`);
      list.append(item);
    });
  }

  function variablesAt(index) {
    const vars = new Map();
    for (let i = 0; i <= index; i++) for (const [k, v] of Object.entries(current.steps[i].set || {})) vars.set(k, v);
    return vars;
  }

  function renderSource(step) {
    const src = current.source;
    const table = $("source");
    table.replaceChildren();
    $("source-note").textContent = src.missing ? `Source not shown: ${src.missing}.` : `${src.path}${src.note ? " · " + src.note : ""}`;
    if (src.missing) return;
    // Steps per line, and the one shown: the hit picked in the selector, else the latest at or
    // before the current step, else the first (a later one, dimmed).
    const byLine = new Map();
    current.steps.forEach((s, i) => { if (s.line && s.kind !== "call" && Object.keys(s.set || {}).length) { if (!byLine.has(s.line)) byLine.set(s.line, []); byLine.get(s.line).push(i); } });
    src.lines.forEach((text, offset) => {
      const no = src.first_line + offset;
      const tr = el("tr", { "data-line": no }, el("td", { class: "no" }, String(no)), el("td", { class: "code" }, text));
      const cell = el("td", { class: "values" });
      const hits = byLine.get(no) || [];
      if (hits.length) {
        let shown = chosenHit.get(no);
        if (shown === undefined) { const past = hits.filter((i) => i <= stepIndex); shown = past.length ? past[past.length - 1] : hits[0]; }
        const s = current.steps[shown];
        const span = el("span", shown > stepIndex ? { class: "future" } : {}, Object.entries(s.set).map(([k, v]) => `${k} = ${v}`).join(", "));
        cell.append(span);
        if (hits.length > 1) cell.append(hitSelector(no, hits, shown));
      }
      tr.append(cell);
      if (step.line === no) { tr.classList.add("current"); tr.setAttribute("aria-current", "step"); }
      table.append(tr);
    });
  }

  function hitSelector(line, hits, shown) {
    // Loops record the first and last N hits of a line; the gap between them is shown as such.
    const select = el("select", { "aria-label": `hit shown for line ${line}` });
    let previous = null;
    for (const i of hits) {
      const hit = current.steps[i].hit || 0;
      if (previous !== null && hit > previous + 1) {
        select.append(el("option", { disabled: "" }, `… hits ${previous + 1}–${hit - 1} not recorded`));
      }
      const option = el("option", { value: i }, `hit ${hit}`);
      if (i === shown) option.selected = true;
      select.append(option);
      previous = hit;
    }
    select.addEventListener("change", () => { stepIndex = Number(select.value); chosenHit.set(line, stepIndex); renderStep(); });
    return select;
  }

  function renderStep() {
    const step = current.steps[stepIndex];
    $("step-label").textContent = `step ${stepIndex + 1} of ${current.steps.length}`;
    $("step-text").textContent = `${fmtOffset(step.t)}  ${step.line ? "line " + step.line + ": " : ""}${step.text || step.kind}`;
    const vars = variablesAt(stepIndex);
    kvRows($("variables"), [...vars.entries()], new Set(Object.keys(step.set || {})));
    renderSource(step);
    for (const li of $("steps").children) {
      if (Number(li.dataset.step) === stepIndex) { li.setAttribute("aria-current", "step"); keepInView($("steps"), li); }
      else li.removeAttribute("aria-current");
    }
    const idx = order.findIndex((c) => c.id === current.id);
    $("prev").disabled = stepIndex === 0 && idx <= 0;
    $("next").disabled = stepIndex === current.steps.length - 1 && idx === order.length - 1;
  }

  // Scroll only the list (scrollIntoView would move the whole page at every step).
  function keepInView(list, item) {
    const top = item.offsetTop, bottom = top + item.offsetHeight;
    if (top < list.scrollTop || bottom > list.scrollTop + list.clientHeight) list.scrollTop = top - list.clientHeight / 2;
  }

  // Stepping runs through the session: past a call's last step comes the next call's first.
  async function step(delta) {
    if (!current) { if (order.length) await openCall(order[0].id, 0, false); return; }
    const next = stepIndex + delta;
    chosenHit.clear();
    if (next >= 0 && next < current.steps.length) { stepIndex = next; renderStep(); return; }
    const idx = order.findIndex((c) => c.id === current.id) + delta;
    if (idx >= 0 && idx < order.length) await openCall(order[idx].id, delta > 0 ? 0 : "last", false);
  }

  async function jumpToException() {
    if (!summary.errors.length) return;
    const at = current ? summary.errors.indexOf(current.id) : -1;
    await openCall(summary.errors[(at + 1) % summary.errors.length], "last");
  }

  // -- search ----------------------------------------------------------------------------------
  async function runSearch(text) {
    const section = $("search-results"), list = $("search-list"), status = $("search-status");
    section.hidden = false;
    list.replaceChildren();
    for (const g of document.querySelectorAll(".bar.match")) g.classList.remove("match");
    let found;
    try { found = await store.search(text); } catch (err) { status.textContent = err.message; return; }
    const scope = store.embedded ? ` in the ${store.embedded.calls} calls this file embeds` : "";
    status.textContent = found.count
      ? `${found.count} step${found.count === 1 ? "" : "s"} where ${text}${scope}${found.shown < found.count ? ` (first ${found.shown} shown)` : ""}`
      : `no step where ${text}${scope}`;
    for (const m of found.matches) {
      const bar = document.querySelector(`.bar[data-call="${CSS.escape(m.call)}"]`);
      if (bar) bar.classList.add("match");
      list.append(el("li", {}, el("button", { type: "button", onclick: () => openCall(m.call, m.step) },
        `${fmtOffset(m.t)}  ${shortName(m.name)}${m.line ? " line " + m.line : ""}: ${m.text}`)));
    }
    if (found.matches.length) await openCall(found.matches[0].call, found.matches[0].step, false);
  }

  // -- start -----------------------------------------------------------------------------------
  function setTheme(theme) {
    document.documentElement.dataset.theme = theme;
    $("theme").textContent = theme === "dark" ? "Light" : "Dark";
    $("theme").setAttribute("aria-pressed", String(theme === "dark"));
    try { localStorage.setItem("otel-scope-theme", theme); } catch (err) { /* file:// may refuse storage */ }
  }

  async function start() {
    try { summary = await store.summary(); } catch (err) { $("trace-facts").textContent = `Cannot load the trace: ${err.message}`; return; }
    for (const c of summary.calls) callsById.set(c.id, c);
    order = summary.calls.filter((c) => !c.session).sort((a, b) => a.start - b.start);
    const facts = [`trace ${summary.trace_id}`];
    if (summary.session) facts.push(`session ${summary.session}`);
    if (summary.services.length) facts.push(`service ${summary.services.join(", ")}`);
    facts.push(`${fmtDuration(summary.duration_ns)}`, `${summary.span_count} spans`, `${summary.messages.length} messages`);
    if (summary.errors.length) facts.push(`${summary.errors.length} raised`);
    $("trace-facts").textContent = facts.join(" · ");
    const notes = [];
    if (summary.calls_total > summary.calls.length) notes.push(`The summary holds ${summary.calls.length} of ${summary.calls_total} spans (the earliest, and every one that raised).`);
    if (summary.dropped_captures) notes.push(`${summary.dropped_captures} captures were not recorded (budgets).`);
    if (summary.sdk_dropped_events) notes.push(`${summary.sdk_dropped_events} events were dropped at the SDK's per-span limit.`);
    for (const w of summary.warnings) notes.push(w);
    if (store.embedded) {
      const e = store.embedded;
      notes.push(`Self-contained file: ${e.calls} of ${e.of} calls embedded with their source and values (at most ${e.max_calls} calls, ${(e.max_bytes / 1e6).toFixed(0)} MB; calls that raised first, then calls with captured values); search looks in those.`);
    }
    if (notes.length) { $("notice").hidden = false; $("notice").textContent = notes.join(" "); }
    $("jump-exception").disabled = !summary.errors.length;
    if (!summary.errors.length) $("jump-exception").title = "No call raised in this trace";
    drawLanes();
    const first = order.find((c) => c.captures > 0) || order[0];
    if (first) await openCall(first.id, 0, false);
  }

  $("zoom-in").addEventListener("click", () => setZoom(zoom * 2));
  $("zoom-out").addEventListener("click", () => setZoom(zoom / 2));
  $("zoom-fit").addEventListener("click", () => setZoom(1));
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("jump-exception").addEventListener("click", jumpToException);
  $("search").addEventListener("submit", (ev) => { ev.preventDefault(); const q = $("q").value.trim(); if (q) runSearch(q); });
  $("theme").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark"
      : matchMedia("(prefers-color-scheme: dark)").matches;
    setTheme(dark ? "light" : "dark");
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest && ev.target.closest("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "ArrowRight" || ev.key === "j") { ev.preventDefault(); step(1); }
    else if (ev.key === "ArrowLeft" || ev.key === "k") { ev.preventDefault(); step(-1); }
    else if (ev.key === "e") jumpToException();
    else if (ev.key === "+" || ev.key === "=") setZoom(zoom * 2);
    else if (ev.key === "-") setZoom(zoom / 2);
    else if (ev.key === "0") setZoom(1);
    else if (ev.key === "/") { ev.preventDefault(); $("q").focus(); }
    else if (ev.key === "s") { const sender = document.querySelector("#messages .sender"); if (sender) sender.click(); }
  });
  let saved = null;
  try { saved = localStorage.getItem("otel-scope-theme"); } catch (err) { /* file:// may refuse storage */ }
  if (saved) setTheme(saved);
  else $("theme").textContent = matchMedia("(prefers-color-scheme: dark)").matches ? "Light" : "Dark";
  start();
})();
