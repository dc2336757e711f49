"use strict";
// Headroom's dashboard: reads the JSON API and builds the DOM and SVG. Every value from the API enters the
// page as text (textContent, text nodes) or as a number attribute, never as markup.

const SVGNS = "http://www.w3.org/2000/svg";
const DAY = 86400;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : `${r.status} ${r.statusText}`;
    throw new Error(msg);
  }
  return body;
}

function showError(target, err) {
  target.replaceChildren(el("p", { class: "error" }, `Could not load: ${err.message}`));
}

const finite = (v) => typeof v === "number" && Number.isFinite(v);

function fmtValue(resource, v) {
  if (!finite(v)) return "—";
  if (resource === "cpu") {
    if (Math.abs(v) < 1) return `${Math.round(v * 1000)}m`;
    const n = +v.toFixed(2);
    return `${n} core${n === 1 ? "" : "s"}`;
  }
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const whole = Math.abs(v) >= 100 || i === 0 || Number.isInteger(+v.toFixed(1));
  return `${whole ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

function fmtDate(t) {
  return new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function fmtDay(t) {
  return new Date(t * 1000).toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
}

// "in N days" counts from the assessment that produced the estimate, so it stays right for old data.
function fmtIn(t, from) {
  const d = (t - from) / DAY;
  if (d <= 0) return "now";
  if (d < 1) return `in ${Math.max(1, Math.round(d * 24))} h`;
  const n = Math.round(d);
  return `in ${n} day${n === 1 ? "" : "s"}`;
}

function fmtMoney(v) {
  if (!finite(v)) return "—";
  return `${v < 0 ? "−" : ""}${Math.abs(v).toFixed(2)}`;
}

function fmtPct(p) {
  return finite(p) ? `${Math.round(p * 100)} %` : "—";
}

// The badge of a workload's earliest exhaustion.
function urgencyBadge(w) {
  const what = w.earliest_resource && w.earliest_kind ? `${w.earliest_resource} ${w.earliest_kind}` : "";
  if (w.already_over) return el("span", { class: "badge over" }, `over its ${what}`.trim());
  if (finite(w.earliest_eta)) {
    const from = w.assessed_at || Date.now() / 1000;
    const soon = w.earliest_eta - from < 14 * DAY;
    return el(
      "span",
      { class: `badge ${soon ? "soon" : "later"}`, title: fmtDate(w.earliest_eta) },
      `${what} ${fmtIn(w.earliest_eta, from)}`,
    );
  }
  if (w.assessed_at) return el("span", { class: "badge fine" }, "not within horizon");
  return el("span", { class: "muted" }, "not assessed yet");
}

function workloadLink(w) {
  return el("a", { href: `/workloads/${encodeURIComponent(w.id)}` }, w.name);
}

function usageCell(resource, used, request, limit) {
  return el(
    "td",
    { class: "num", title: `usage / request / limit per replica` },
    `${fmtValue(resource, used)} / ${fmtValue(resource, request)} / ${fmtValue(resource, limit)}`,
  );
}

// ---------------------------------------------------------------------------------------------------
// The list page.

async function indexPage() {
  const params = new URLSearchParams(location.search);
  const state = {
    sort: ["urgency", "saving", "name"].includes(params.get("sort")) ? params.get("sort") : "urgency",
    namespace: params.get("namespace") || "",
    page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1),
  };
  const nsInput = document.getElementById("namespace");
  const sortSelect = document.getElementById("sort");
  nsInput.value = state.namespace;
  sortSelect.value = state.sort;
  const namespaces = new Set();

  function remember(rows) {
    for (const w of rows) namespaces.add(w.namespace);
    const list = document.getElementById("namespaces");
    list.replaceChildren(...[...namespaces].sort().map((n) => el("option", { value: n })));
  }

  function go() {
    const q = new URLSearchParams();
    if (state.sort !== "urgency") q.set("sort", state.sort);
    if (state.namespace) q.set("namespace", state.namespace);
    if (state.page > 1) q.set("page", String(state.page));
    const qs = q.toString();
    history.replaceState(null, "", qs ? `/?${qs}` : "/");
    loadAtRisk();
    loadWorkloads();
  }

  document.getElementById("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    state.namespace = nsInput.value.trim();
    state.sort = sortSelect.value;
    state.page = 1;
    go();
  });
  sortSelect.addEventListener("change", () => {
    state.sort = sortSelect.value;
    state.page = 1;
    go();
  });

  async function loadAtRisk() {
    const target = document.getElementById("at-risk");
    const q = new URLSearchParams({ within_days: "14", per_page: "100" });
    if (state.namespace) q.set("namespace", state.namespace);
    try {
      const data = await getJSON(`/api/v1/at-risk?${q}`);
      remember(data.workloads);
      if (data.workloads.length === 0) {
        target.replaceChildren(el("p", { class: "muted" }, "Nothing is expected to run out within 14 days."));
        return;
      }
      const rows = data.workloads.map((w) =>
        el(
          "tr",
          {},
          el("td", {}, workloadLink(w)),
          el("td", {}, w.namespace),
          el("td", {}, w.kind),
          el("td", {}, urgencyBadge(w)),
          el("td", {}, w.already_over ? "already over" : finite(w.earliest_eta) ? fmtDate(w.earliest_eta) : "—"),
          el("td", { class: "num" }, fmtPct(w.earliest_probability)),
        ),
      );
      const more = data.total > data.workloads.length ? ` (first ${data.workloads.length} of ${data.total})` : "";
      document.getElementById("at-risk-note").textContent =
        `${data.total} expected to reach a request or limit within 14 days${more}`;
      target.replaceChildren(
        el(
          "table",
          { class: "at-risk" },
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              ["Workload", "Namespace", "Kind", "Runs out", "When"].map((h) => el("th", {}, h)),
              el("th", { class: "num" }, "Probability"),
            ),
          ),
          el("tbody", {}, rows),
        ),
      );
    } catch (err) {
      showError(target, err);
    }
  }

  function sortHeader(label, key, cls) {
    const b = el("button", { type: "button", class: state.sort === key ? "active" : "" }, label);
    b.addEventListener("click", () => {
      state.sort = key;
      sortSelect.value = key;
      state.page = 1;
      go();
    });
    return el("th", { class: cls }, b);
  }

  async function loadWorkloads() {
    const target = document.getElementById("workloads");
    const pager = document.getElementById("pager");
    const q = new URLSearchParams({ sort: state.sort, page: String(state.page), per_page: "50" });
    if (state.namespace) q.set("namespace", state.namespace);
    try {
      const data = await getJSON(`/api/v1/workloads?${q}`);
      remember(data.workloads);
      document.getElementById("total").textContent = `${data.total} in all`;
      const rows = data.workloads.map((w) =>
        el(
          "tr",
          { class: "workload" },
          el("td", {}, workloadLink(w)),
          el("td", {}, w.namespace),
          el("td", {}, w.kind),
          el("td", { class: "num" }, finite(w.replicas) ? +w.replicas.toFixed(1) : "—"),
          usageCell("cpu", w.cpu_usage, w.cpu_request, w.cpu_limit),
          usageCell("memory", w.memory_usage, w.memory_request, w.memory_limit),
          el("td", {}, urgencyBadge(w)),
          el(
            "td",
            { class: `num ${w.saving_money_per_month > 0 ? "saving" : w.saving_money_per_month < 0 ? "cost" : ""}` },
            fmtMoney(w.saving_money_per_month),
          ),
        ),
      );
      target.replaceChildren(
        el(
          "table",
          { class: "workloads" },
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              sortHeader("Workload", "name"),
              el("th", {}, "Namespace"),
              el("th", {}, "Kind"),
              el("th", { class: "num" }, "Replicas"),
              el("th", { class: "num" }, "CPU used / req / limit"),
              el("th", { class: "num" }, "Memory used / req / limit"),
              sortHeader("Runs out", "urgency"),
              sortHeader("Saving / month", "saving", "num"),
            ),
          ),
          el("tbody", {}, rows),
        ),
      );
      if (data.workloads.length === 0) target.append(el("p", { class: "muted" }, "No workload matches."));
      const pages = Math.max(1, Math.ceil(data.total / data.per_page));
      const prev = el("button", { type: "button", disabled: state.page <= 1 }, "← previous");
      const next = el("button", { type: "button", disabled: state.page >= pages }, "next →");
      prev.addEventListener("click", () => {
        state.page -= 1;
        go();
      });
      next.addEventListener("click", () => {
        state.page += 1;
        go();
      });
      pager.replaceChildren(prev, el("span", { class: "muted" }, `page ${state.page} of ${pages}`), next);
    } catch (err) {
      showError(target, err);
      pager.replaceChildren();
    }
  }

  go();
}

// ---------------------------------------------------------------------------------------------------
// The workload page.

// History points are [t, v] (raw) or [t, mean, max] (bucketed).
function meanOf(p) {
  return p[1];
}
function maxOf(p) {
  return p.length > 2 ? p[2] : p[1];
}

async function historyOf(id, container, metric, from, to) {
  const q = new URLSearchParams({ container, metric, from: String(from), to: String(to), max_points: "600" });
  const data = await getJSON(`/api/v1/workloads/${encodeURIComponent(id)}/history?${q}`);
  return data.points;
}

// Ticks at round values: 1, 2 or 5 times a power of ten, or of 1024 for bytes.
function niceTicks(max, resource) {
  if (!(max > 0)) return [0];
  let base = 1;
  if (resource === "memory") {
    while (max / base >= 1024 * 4) base *= 1024;
  }
  const raw = max / base / 4;
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= raw) * base;
  const ticks = [];
  for (let v = 0; v <= max + 1e-9 * max; v += step) ticks.push(v);
  return ticks;
}

function pathOf(points, x, y, gap) {
  let d = "";
  let prev = null;
  for (const [t, v] of points) {
    if (!finite(v)) {
      prev = null;
      continue;
    }
    const cmd = prev === null || t - prev > gap ? "M" : "L";
    d += `${cmd}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    prev = t;
  }
  return d;
}

// Step lines for requests and limits: a value holds until the next one.
function stepPath(points, x, y, until) {
  let d = "";
  points.forEach(([t, v], i) => {
    if (!finite(v)) return;
    const next = i + 1 < points.length ? points[i + 1][0] : until;
    d += `${d ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}L${x(next).toFixed(1)},${y(v).toFixed(1)}`;
  });
  return d;
}

function drawChart(resource, view) {
  const W = 860, H = 270, L = 70, R = 14, T = 14, B = 30;
  const { from, to, now, usage, usageMax, request, limit, forecast, exhaustion } = view;
  const x = (t) => L + ((t - from) / (to - from)) * (W - L - R);
  const fc = [];
  if (forecast) {
    forecast.p50.forEach((p, i) => {
      const t = forecast.start + i * forecast.step_secs;
      if (t <= to) fc.push([t, p, forecast.lower[i], forecast.upper[i]]);
    });
  }
  const values = [
    ...usage.map(meanOf),
    ...usageMax.map(maxOf),
    ...request.map(maxOf),
    ...fc.map((p) => p[3]),
    ...fc.map((p) => p[1]),
  ].filter(finite);
  const core = Math.max(...values, 0);
  const highestLimit = Math.max(...limit.map(maxOf).filter(finite), 0);
  // A limit far above everything else would squash the usage into a flat line at the bottom: it is then
  // named at the top edge instead of drawn.
  const limitOff = core > 0 && highestLimit > 2 * core;
  const top = Math.max(core, limitOff ? 0 : highestLimit) * 1.08 || 1;
  const ticks = niceTicks(top, resource);
  const ymax = Math.max(top, ticks[ticks.length - 1]);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${resource} usage and forecast` });

  const axis = svg("g", { class: "axis" });
  for (const v of ticks) {
    axis.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    axis.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtValue(resource, v)));
  }
  const span = to - from;
  const every = span > 40 * DAY ? 7 * DAY : span > 14 * DAY ? 2 * DAY : span > 2 * DAY ? DAY : 6 * 3600;
  for (let t = Math.ceil(from / every) * every; t <= to; t += every) {
    axis.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: T, y2: H - B }));
    const label = every < DAY ? new Date(t * 1000).toISOString().slice(11, 16) : fmtDay(t);
    axis.append(svg("text", { x: x(t), y: H - B + 16, "text-anchor": "middle" }, label));
  }
  s.append(axis);

  if (fc.length > 1) {
    const upper = fc.map((p) => `${x(p[0]).toFixed(1)},${y(p[3]).toFixed(1)}`);
    const lower = fc.map((p) => `${x(p[0]).toFixed(1)},${y(p[2]).toFixed(1)}`).reverse();
    s.append(svg("path", { class: "forecast-band", d: `M${upper.join("L")}L${lower.join("L")}Z` }));
  }
  const gap = 3 * Math.max(300, (usage.length > 1 ? usage[1][0] - usage[0][0] : 300));
  s.append(svg("path", { class: "usage-max", d: pathOf(usageMax.map((p) => [p[0], maxOf(p)]), x, y, gap) }));
  s.append(svg("path", { class: "usage", d: pathOf(usage.map((p) => [p[0], meanOf(p)]), x, y, gap) }));
  const lastSeen = Math.max(now, ...usage.map((p) => p[0]));
  for (const [cls, pts] of [["request", request], ["limit", limitOff ? [] : limit]]) {
    const line = pts.map((p) => [p[0], maxOf(p)]);
    if (line.length === 0) continue;
    s.append(svg("path", { class: cls, d: stepPath(line, x, y, lastSeen) }));
    const last = line[line.length - 1][1];
    if (finite(last)) {
      s.append(svg("path", { class: `${cls} projected`, d: `M${x(lastSeen)},${y(last)}L${x(to)},${y(last)}` }));
    }
  }
  if (fc.length > 1) {
    s.append(svg("path", { class: "forecast-p50", d: pathOf(fc.map((p) => [p[0], p[1]]), x, y, Infinity) }));
  }
  for (const e of exhaustion) {
    if (!finite(e.eta) || e.status === "already_over" || e.eta > to) continue;
    const c = svg("circle", {
      class: "eta",
      cx: x(e.eta),
      cy: y(e.threshold),
      r: 5,
      stroke: `var(--${e.threshold_kind === "limit" ? "limit" : "request"})`,
    });
    c.append(svg("title", {}, `reaches its ${e.threshold_kind} ${fmtDate(e.eta)}`));
    s.append(c);
  }
  if (limitOff) {
    s.append(
      svg(
        "text",
        { class: "limit-off", x: W - R - 4, y: T + 10, "text-anchor": "end" },
        `limit ${fmtValue(resource, highestLimit)} ↑ above the chart`,
      ),
    );
  }
  s.append(svg("line", { class: "now", x1: x(now), x2: x(now), y1: T, y2: H - B }));
  s.append(svg("text", { class: "now-label", x: x(now) + 4, y: T + 10 }, "now"));

  const legend = el(
    "div",
    { class: "legend" },
    el("span", { class: "l-usage" }, "usage (mean per replica)"),
    el("span", { class: "l-usage-max" }, "usage (max replica)"),
    el("span", { class: "l-request" }, "request"),
    el("span", { class: "l-limit" }, "limit"),
    el("span", { class: "l-p50" }, "forecast p50"),
    el("span", { class: "l-band" }, forecast ? `forecast ${Math.round(forecast.level * 100)} % interval` : "no forecast"),
  );
  return el("div", { class: "chart" }, s, legend);
}

function exhaustionList(resource, list, forecast) {
  if (list.length === 0) return el("p", { class: "muted" }, "No exhaustion estimate (no request or limit set).");
  const order = { limit: 0, request: 1 };
  const items = [...list]
    .sort((a, b) => (order[a.threshold_kind] ?? 2) - (order[b.threshold_kind] ?? 2))
    .map((e) => {
      const what = `its ${e.threshold_kind} (${fmtValue(resource, e.threshold)})`;
      if (e.status === "already_over") {
        return el("li", {}, el("span", { class: "badge over" }, "already over"), ` ${what}`);
      }
      if (finite(e.eta)) {
        const soon = e.eta - e.computed_at < 14 * DAY;
        const range =
          finite(e.eta_early) || finite(e.eta_late)
            ? ` Between ${finite(e.eta_early) ? fmtDate(e.eta_early) : "now"} and ${finite(e.eta_late) ? fmtDate(e.eta_late) : "beyond the horizon"}.`
            : "";
        return el(
          "li",
          {},
          el("span", { class: `badge ${soon ? "soon" : "later"}` }, fmtIn(e.eta, e.computed_at)),
          ` reaches ${what} on ${fmtDate(e.eta)}, probability ${fmtPct(e.probability)}.${range}`,
        );
      }
      const early = finite(e.eta_early) ? ` (at the earliest ${fmtDate(e.eta_early)})` : "";
      return el(
        "li",
        {},
        el("span", { class: "badge fine" }, "not within horizon"),
        ` ${what}: probability ${fmtPct(e.probability)}${early}`,
      );
    });
  const model = forecast
    ? el(
        "p",
        { class: "muted" },
        `model ${forecast.model}, backtest MASE ${finite(forecast.backtest_mase) ? forecast.backtest_mase.toFixed(2) : "—"}, assessed ${fmtDate(forecast.computed_at)}`,
      )
    : null;
  return el("div", {}, el("ul", { class: "eta-list" }, items), model);
}

function recommendationBlock(resource, r) {
  if (!r) return el("p", { class: "muted" }, "No recommendation yet.");
  const limit = finite(r.limit) ? fmtValue(resource, r.limit) : "none";
  const saving = r.saving_money_per_month;
  return el(
    "div",
    {},
    el(
      "dl",
      {},
      el("dt", {}, "request"),
      el(
        "dd",
        {},
        `${fmtValue(resource, r.current_request)} → `,
        el("b", {}, fmtValue(resource, r.request)),
        finite(r.request_lower) && finite(r.request_upper)
          ? el("span", { class: "muted" }, ` (${fmtValue(resource, r.request_lower)}–${fmtValue(resource, r.request_upper)})`)
          : null,
      ),
      el("dt", {}, "limit"),
      el("dd", {}, `${fmtValue(resource, r.current_limit)} → `, el("b", {}, limit)),
      el("dt", {}, "saving"),
      el(
        "dd",
        { class: saving > 0 ? "saving" : saving < 0 ? "cost" : "" },
        `${fmtMoney(saving)} / month (${fmtValue(resource, r.saving_amount)} per replica)`,
      ),
      el("dt", {}, "policy"),
      el("dd", {}, `${r.policy}, ${r.rule}`),
    ),
    el(
      "details",
      {},
      el("summary", {}, "why, and the risk"),
      el("p", { class: "why" }, el("b", {}, "Why: "), r.reason),
      el("p", { class: "why" }, el("b", {}, "Risk: "), r.risk),
    ),
  );
}

async function workloadPage() {
  const id = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const summary = document.getElementById("summary");
  const holder = document.getElementById("containers");
  document.getElementById("json-link").setAttribute("href", `/api/v1/workloads/${encodeURIComponent(id)}`);
  let data;
  try {
    data = await getJSON(`/api/v1/workloads/${encodeURIComponent(id)}`);
  } catch (err) {
    showError(summary, err);
    return;
  }
  const w = data.workload;
  document.title = `Headroom · ${w.namespace}/${w.name}`;
  summary.replaceChildren(
    el("h1", {}, `${w.namespace} / ${w.name}`),
    el("div", { class: "muted" }, `${w.kind} in cluster ${w.cluster}`),
    el(
      "div",
      { class: "facts" },
      el("div", {}, el("span", { class: "muted" }, "runs out"), urgencyBadge(w)),
      el("div", {}, el("span", { class: "muted" }, "replicas"), el("b", {}, finite(w.replicas) ? +w.replicas.toFixed(1) : "—")),
      el("div", {}, el("span", { class: "muted" }, "containers"), el("b", {}, data.containers.length)),
      el(
        "div",
        {},
        el("span", { class: "muted" }, "saving / month"),
        el("b", { class: w.saving_money_per_month >= 0 ? "saving" : "cost" }, fmtMoney(w.saving_money_per_month)),
      ),
      el("div", {}, el("span", { class: "muted" }, "assessed"), el("b", {}, w.assessed_at ? fmtDate(w.assessed_at) : "not yet")),
    ),
  );

  const back = document.getElementById("back");
  const ahead = document.getElementById("ahead");
  // The window is kept in the address (?back=14&ahead=30), so a view can be linked to.
  const params = new URLSearchParams(location.search);
  for (const select of [back, ahead]) {
    const want = params.get(select.id);
    if ([...select.options].some((o) => o.value === want)) select.value = want;
  }
  function remember() {
    history.replaceState(null, "", `${location.pathname}?back=${back.value}&ahead=${ahead.value}`);
  }
  async function render() {
    const sections = data.containers.map((c) => {
      const section = el("section", { class: "card container" }, el("h2", {}, `container ${c.name}`));
      for (const resource of ["cpu", "memory"]) {
        const r = c.resources[resource];
        if (!r) continue;
        const chart = el("div", {}, el("p", { class: "muted" }, "Loading history…"));
        section.append(
          el(
            "div",
            { class: "resource", "data-resource": resource },
            el("div", {}, el("h3", {}, resource === "cpu" ? "CPU" : "Memory"), chart),
            el(
              "div",
              { class: "side" },
              el("h3", {}, "Runs out"),
              exhaustionList(resource, r.exhaustion, r.forecast),
              el("h3", {}, "Recommendation"),
              recommendationBlock(resource, r.recommendation),
            ),
          ),
        );
        loadChart(c, resource, r, chart);
      }
      return section;
    });
    holder.replaceChildren(...sections);
  }

  async function loadChart(c, resource, r, target) {
    const now = r.forecast ? r.forecast.computed_at : w.assessed_at || Math.floor(Date.now() / 1000);
    const from = now - Number(back.value) * DAY;
    const to = now + Number(ahead.value) * DAY;
    const fetchOr = (metric) =>
      r.series[metric] ? historyOf(w.id, c.name, metric, from, now + 1) : Promise.resolve([]);
    try {
      const [usage, usageMax, request, limit] = await Promise.all(
        ["usage", "usage_max", "request", "limit"].map((m) => fetchOr(`${resource}_${m}`)),
      );
      target.replaceChildren(
        drawChart(resource, {
          from,
          to,
          now,
          usage,
          usageMax,
          request,
          limit,
          forecast: r.forecast,
          exhaustion: r.exhaustion,
        }),
      );
    } catch (err) {
      showError(target, err);
    }
  }

  for (const select of [back, ahead]) {
    select.addEventListener("change", () => {
      remember();
      render();
    });
  }
  render();
}

if (document.body.dataset.page === "workload") workloadPage();
else indexPage();
