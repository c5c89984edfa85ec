// eddy dashboard: vanilla JS, no build step. Figures come from the JSON API (docs/dashboard.md);
// plots are drawn as SVG polylines from the sampled /metrics series; a server-sent event per
// sampling period refreshes the page shown.
"use strict";

const NS = "http://www.w3.org/2000/svg";
const $ = (sel) => document.querySelector(sel);
const state = { page: "dag", pages: {}, last: { values: {} }, busy: false };

// ---- token: `#token=…` in the printed URL, kept for this tab ----
(function takeToken() {
  const m = location.hash.match(/token=([0-9a-f]+)/);
  if (m) {
    sessionStorage.setItem("eddy-token", m[1]);
    history.replaceState(null, "", location.pathname + "#dag");
  }
  $("#token").value = sessionStorage.getItem("eddy-token") || "";
  $("#token").addEventListener("change", (e) => sessionStorage.setItem("eddy-token", e.target.value.trim()));
})();

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

// ---- series keys `name{a="x",b="y"}` ----
function parseKey(key) {
  const i = key.indexOf("{");
  const labels = {};
  if (i < 0) return { name: key, labels };
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  let m;
  while ((m = re.exec(key.slice(i))) !== null) labels[m[1]] = m[2].replace(/\\(.)/g, "$1");
  return { name: key.slice(0, i), labels };
}

// the newest value of every series named `name` whose labels include `want`, summed
// (undefined when there is none)
function pick(name, want) {
  let sum;
  for (const [k, v] of Object.entries(state.last.values)) {
    if (!k.startsWith(name) || (k.length > name.length && k[name.length] !== "{")) continue;
    const { labels } = parseKey(k);
    if (Object.entries(want || {}).every(([l, x]) => x === undefined || labels[l] === x)) sum = (sum || 0) + v;
  }
  return sum;
}

function rate(points) {
  const out = [];
  for (let i = 1; i < points.length; i++) {
    const dt = (points[i][0] - points[i - 1][0]) / 1000;
    const dv = points[i][1] - points[i - 1][1];
    if (dt > 0) out.push([points[i][0], dv < 0 ? 0 : dv / dt]);
  }
  return out;
}

function fmt(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(2) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (Number.isInteger(v)) return String(v);
  return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

function dur(ms) {
  if (ms === undefined || ms === null) return "–";
  if (ms < 1000) return ms + " ms";
  if (ms < 120000) return (ms / 1000).toFixed(1) + " s";
  return (ms / 60000).toFixed(1) + " min";
}

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fillTable(sel, rows) {
  const body = $(sel + " tbody");
  body.replaceChildren(...rows);
}

function row(cells, attrs) {
  const tr = el("tr", attrs);
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.append(c); else td.textContent = c;
    tr.append(td);
  }
  return tr;
}

// ---- plots: one polyline per series, shared axes ----
const COLORS = ["#0052cc", "#de350b", "#00875a", "#ff991f", "#6554c0", "#00a3bf", "#97a0af", "#bf2600"];

function plot(svg, series) {
  const legendRows = Math.min(3, Math.ceil(series.length / 3));
  const W = 440, H = 190 + 12 * Math.max(0, legendRows - 1), L = 46, R = 8, T = 8, B = 22 + 12 * legendRows;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.style.height = H + "px";
  svg.replaceChildren();
  const all = series.flatMap((s) => s.points);
  svg.dataset.points = String(all.length);
  if (all.length === 0) {
    svg.append(el("svg:text", { x: W / 2 - 30, y: H / 2 }, "no data yet"));
    return;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(0, ...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1000; x1 += 1000; }
  if (y1 === y0) y1 = y0 + 1;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  svg.append(el("svg:line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#c1c7d0" }));
  svg.append(el("svg:line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#c1c7d0" }));
  svg.append(el("svg:text", { x: 2, y: T + 8 }, fmt(y1)));
  svg.append(el("svg:text", { x: 2, y: H - B }, fmt(y0)));
  svg.append(el("svg:text", { x: L, y: H - B + 12 }, new Date(x0).toLocaleTimeString()));
  svg.append(el("svg:text", { x: W - R - 50, y: H - B + 12 }, new Date(x1).toLocaleTimeString()));
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const line = el("svg:polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 1.5, class: "line", "data-label": s.label });
    svg.append(line);
    if (s.points.length === 1) svg.append(el("svg:circle", { cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 3, fill: color }));
    if (i < 9) svg.append(el("svg:text", { x: 4 + (i % 3) * 145, y: H - B + 24 + Math.floor(i / 3) * 12, fill: color }, s.label.slice(0, 26)));
  });
}

async function series(prefix) {
  return (await getJson("/api/series?prefix=" + encodeURIComponent(prefix))).series;
}

// ---- pages ----
async function showDag() {
  const run = await getJson("/api/run");
  $("#run-dir").textContent = run.dir;
  const st = (run.state && run.state.nodes) || {};
  const now = Date.now();
  // layers: the longest path from a node without incoming edges
  const depth = {};
  const names = run.nodes.map((n) => n.name);
  names.forEach((n) => (depth[n] = 0));
  for (let k = 0; k < names.length; k++)
    for (const e of run.edges) if (depth[e.from] !== undefined && depth[e.to] !== undefined) depth[e.to] = Math.max(depth[e.to], depth[e.from] + 1);
  const cols = {};
  const pos = {};
  for (const n of names) {
    const d = depth[n];
    cols[d] = (cols[d] || 0) + 1;
    pos[n] = { x: 16 + d * 190, y: 16 + (cols[d] - 1) * 74 };
  }
  const svg = $("#dag");
  const height = 40 + Math.max(1, ...Object.values(cols)) * 74;
  svg.setAttribute("viewBox", `0 0 ${Math.max(600, 40 + (Math.max(0, ...Object.values(depth)) + 1) * 190)} ${height}`);
  svg.style.height = height + "px";
  svg.replaceChildren();
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
  marker.append(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#7a869a" }));
  defs.append(marker);
  svg.append(defs);
  for (const e of run.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const [x1, y1, x2, y2] = [a.x + 150, a.y + 26, b.x, b.y + 26];
    const p = el("svg:path", { d: `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}`, class: "edge " + e.kind, "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to });
    p.append(el("svg:title", {}, e.kind));
    svg.append(p);
  }
  const rows = [];
  for (const n of run.nodes) {
    const s = st[n.name] || { status: "pending", attempts: 0, runs: 0, rows: 0, versions: [] };
    const t = run.timings[n.name] || {};
    const ms = t.started_ms ? (t.finished_ms || now) - t.started_ms : null;
    const g = el("svg:g", { class: "node", "data-node": n.name, "data-state": s.status, "data-duration-ms": ms === null ? "" : ms, transform: `translate(${pos[n.name].x},${pos[n.name].y})` });
    g.append(el("svg:rect", { width: 150, height: 52, class: "state-" + s.status }));
    g.append(el("svg:text", { x: 8, y: 16, "font-weight": "bold" }, n.name));
    g.append(el("svg:text", { x: 8, y: 31 }, `${n.kind} · ${s.status}`));
    g.append(el("svg:text", { x: 8, y: 46 }, `attempts ${s.attempts} · ${dur(ms)}`));
    svg.append(g);
    const note = s.error || s.message || (n.schedule ? n.schedule : "");
    rows.push(row([n.name, n.kind, s.status, s.attempts, s.runs, fmt(s.rows), dur(ms), (s.versions || []).join(" "), note], { "data-node": n.name }));
  }
  fillTable("#nodes", rows);
}

const NOT_PROGRESSIVE = /^(restarts|records_lost|records_replayed|source_lag|labels?_|rows)/;

async function showTraining() {
  const [nodeRows, trainRows, nodeMetrics, trainMetrics, bp, lags, checkpoints] = await Promise.all([
    series("eddy_node_rows"), series("eddy_train_rows_total"), series("eddy_node_metric"),
    series("eddy_train_metric"), series("eddy_operator_backpressure_seconds_total"), series("eddy_job_source_lag"),
    series("eddy_job_last_checkpoint_"),
  ]);
  const rows = [];
  for (const [k, pts] of Object.entries({ ...nodeRows, ...trainRows })) {
    const { labels } = parseKey(k);
    const r = rate(pts);
    if (r.some((p) => p[1] > 0) || pts.some((p) => p[1] > 0)) rows.push({ label: labels.node || labels.job, points: r });
  }
  plot($("#plot-rows"), rows);
  const metrics = [];
  for (const [k, pts] of Object.entries({ ...nodeMetrics, ...trainMetrics })) {
    const { labels } = parseKey(k);
    if (NOT_PROGRESSIVE.test(labels.metric)) continue;
    metrics.push({ label: `${labels.node || labels.job} ${labels.metric}`, points: pts });
  }
  plot($("#plot-metrics"), metrics);
  const bpJobs = new Set(Object.keys(bp).map((k) => parseKey(k).labels.job));
  plot($("#plot-backpressure"), Object.entries(bp).map(([k, pts]) => {
    const { labels } = parseKey(k);
    return { label: bpJobs.size > 1 ? `${labels.job} ${labels.operator}` : labels.operator, points: rate(pts) };
  }));
  plot($("#plot-lag"), Object.entries(lags).map(([k, pts]) => {
    const { labels } = parseKey(k);
    return { label: `${labels.job} ${labels.source}`, points: pts };
  }));
  plot($("#plot-checkpoints"), Object.entries(checkpoints).filter(([k]) => parseKey(k).name === "eddy_job_last_checkpoint_seconds")
    .map(([k, pts]) => ({ label: parseKey(k).labels.job, points: pts })));
  if (state.pages.models) {
    const models = (await getJson("/api/models")).models;
    const perVersion = {};
    for (const m of models)
      for (const v of m.versions)
        for (const [name, value] of Object.entries(v.metrics || {})) {
          const key = `${m.name} ${name}`;
          (perVersion[key] = perVersion[key] || []).push([v["created-ms"], value]);
        }
    plot($("#plot-versions"), Object.entries(perVersion).map(([label, points]) => ({ label, points: points.sort((a, b) => a[0] - b[0]) })));
  } else {
    plot($("#plot-versions"), []);
  }
  const v = state.last.values;
  const jobs = new Set(Object.keys(v).filter((k) => k.startsWith("eddy_job_restarts_total")).map((k) => parseKey(k).labels.job));
  const val = (name, job) => v[`${name}{job="${job}"}`];
  const lag = (job) => Object.entries(v).filter(([k]) => k.startsWith("eddy_job_source_lag") && parseKey(k).labels.job === job).reduce((a, [, x]) => a + x, undefined);
  fillTable("#jobs", [...jobs].map((j) => row([
    j, fmt(val("eddy_job_restarts_total", j)), fmt(val("eddy_job_records_lost_total", j)), fmt(val("eddy_job_records_replayed_total", j)),
    fmt(val("eddy_job_checkpoints_total", j)), fmt(val("eddy_job_checkpoints_failed_total", j)),
    val("eddy_job_last_checkpoint_seconds", j) === undefined ? "–" : `${dur(Math.round(val("eddy_job_last_checkpoint_seconds", j) * 1000))}, ${fmt(val("eddy_job_last_checkpoint_bytes", j))} B`,
    fmt(lag(j)),
  ], { "data-job": j })));
}

async function act(model, action, version) {
  const token = $("#token").value.trim();
  const out = $("#action-result");
  const r = await fetch(`/api/models/${encodeURIComponent(model)}/${action}`, {
    method: "POST",
    headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
    body: version === undefined ? "" : JSON.stringify({ version }),
  });
  const body = await r.json().catch(() => ({}));
  out.className = r.ok ? "" : "error";
  out.textContent = r.ok ? `${action} ${model}${body.version ? " v" + body.version : ""}: done` : `${action} failed: ${body.error || r.status}`;
  refresh();
}

async function showModels() {
  const models = (await getJson("/api/models")).models;
  const rows = [];
  for (const m of models) {
    const versions = [...m.versions].sort((a, b) => b.version - a.version);
    versions.forEach((v, i) => {
      const buttons = el("span");
      if (v.stage !== "production") {
        const b = el("button", { class: "promote", "data-model": m.name, "data-version": v.version }, "promote");
        b.onclick = () => act(m.name, "promote", v.version);
        buttons.append(b);
      }
      const pin = el("button", { class: "pin", "data-model": m.name, "data-version": v.version }, m.pinned === v.version ? "pinned" : "pin");
      pin.onclick = () => act(m.name, "pin", v.version);
      buttons.append(pin);
      if (i === 0) {
        const back = el("button", { class: "rollback", "data-model": m.name }, "roll back");
        back.onclick = () => act(m.name, "rollback");
        buttons.append(back);
      }
      const metrics = Object.entries(v.metrics || {}).map(([k, x]) => `${k} ${fmt(x)}`).join(", ");
      const lin = v.lineage || {};
      const lineage = [`by ${v.producer}`, lin.parent ? `parent v${lin.parent}` : "", lin.data ? `data ${lin.data}` : ""].filter(Boolean).join(", ");
      const tr = row([m.name, "v" + v.version, v.stage, new Date(v["created-ms"]).toLocaleTimeString(), fmt(v["training-rows"]), metrics, lineage, buttons],
        { "data-model": m.name, "data-version": v.version, "data-stage": v.stage });
      tr.children[2].className = "stage-" + v.stage;
      rows.push(tr);
    });
  }
  fillTable("#versions", rows);
}

function quantiles(buckets, qs) {
  // buckets: [[le, delta count]] cumulative by le; answers the upper bound (ms) per quantile
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  return qs.map((q) => {
    if (total === 0) return null;
    const b = buckets.find(([, c]) => c >= q * total);
    return b && Number.isFinite(b[0]) ? b[0] * 1000 : null;
  });
}

async function showServing() {
  const [served, requests, buckets] = await Promise.all([
    getJson("/api/serving"), series("eddy_serving_requests_total"), series("eddy_serving_request_seconds_bucket"),
  ]);
  // a run's serve nodes label their figures `node`; `eddy serve` has none
  const nodes = [...new Set(served.models.map((m) => m.server === null ? undefined : m.server))];
  const named = (labels, what) => (labels.node ? `${labels.node} ${what}` : what);
  plot($("#plot-requests"), Object.entries(requests).map(([k, pts]) => {
    const { labels } = parseKey(k);
    return { label: named(labels, labels.protocol), points: rate(pts) };
  }));
  // latency percentiles per sampling period and server, from the HTTP histogram's deltas
  const lines = [];
  for (const node of nodes) {
    const http = Object.entries(buckets).map(([k, pts]) => [parseKey(k).labels, pts])
      .filter(([l]) => l.protocol === "http" && l.node === node)
      .map(([l, pts]) => [l.le === "+Inf" ? Infinity : parseFloat(l.le), pts]).sort((a, b) => a[0] - b[0]);
    const qs = [[], [], []];
    if (http.length) {
      const n = Math.min(...http.map(([, p]) => p.length));
      for (let i = 1; i < n; i++) {
        const deltas = http.map(([le, p]) => [le, p[p.length - n + i][1] - p[p.length - n + i - 1][1]]);
        const t = http[0][1][http[0][1].length - n + i][0];
        quantiles(deltas, [0.5, 0.95, 0.99]).forEach((q, j) => { if (q !== null) qs[j].push([t, q]); });
      }
    }
    ["p50", "p95", "p99"].forEach((p, j) => lines.push({ label: named({ node }, p), points: qs[j] }));
  }
  plot($("#plot-latency"), lines);
  fillTable("#served", served.models.map((m) => {
    const want = { model: m.name, node: m.server === null ? undefined : m.server };
    const g = (name) => pick(name, want);
    const age = g("eddy_serving_model_age_seconds");
    return row([m.server || "–", m.name, m.version === null ? "none" : "v" + m.version, m.policy, m.stage || "–", fmt(g("eddy_serving_model_requests_total")),
      fmt(g("eddy_serving_model_errors_total")), fmt(g("eddy_serving_model_swaps_total")), age === undefined ? "–" : dur(Math.round(age * 1000))],
      { "data-model": m.name, "data-version": m.version === null ? "" : m.version, "data-server": m.server || "" });
  }));
  const errors = [];
  for (const node of nodes)
    for (const p of ["http", "grpc"]) {
      const codes = Object.entries(state.last.values).map(([k, x]) => [parseKey(k), x])
        .filter(([{ name, labels }, x]) => name === "eddy_serving_error_responses_total" && labels.protocol === p && labels.node === node && x > 0)
        .map(([{ labels }, x]) => `${labels.code} ×${fmt(x)}`);
      errors.push(row([node || "–", p, fmt(pick("eddy_serving_errors_total", { protocol: p, class: "client", node })),
        fmt(pick("eddy_serving_errors_total", { protocol: p, class: "server", node })), codes.join(", ") || "none"], { "data-protocol": p }));
    }
  fillTable("#errors", errors);
}

async function showPs() {
  const [shard, pushes, pulls] = await Promise.all([getJson("/api/ps"), series("eddy_ps_push_requests_total"), series("eddy_ps_pull_requests_total")]);
  plot($("#plot-ps"), [
    ...Object.values(pushes).map((pts) => ({ label: "pushes/s", points: rate(pts) })),
    ...Object.values(pulls).map((pts) => ({ label: "pulls/s", points: rate(pts) })),
  ]);
  const age = shard.last_snapshot_ms ? dur(Date.now() - shard.last_snapshot_ms) : "none yet";
  fillTable("#shard", [row([`${shard.shard}/${shard.shards}`, shard.job || "–", fmt(shard.applied), age])]);
  fillTable("#tables", shard.tables.map((t) => row([t.name, fmt(t.rows), t.dim, t.state_len, fmt(t.rows * t.dim * (1 + t.state_len) * 4) + "B"], { "data-table": t.name })));
}

const SHOW = { dag: showDag, training: showTraining, models: showModels, serving: showServing, ps: showPs };

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    await SHOW[state.page]();
    document.body.dataset.rendered = state.page;
  } catch (e) {
    console.error(e);
  } finally {
    state.busy = false;
  }
}

function route() {
  const page = (location.hash.replace("#", "") || "").split("&")[0];
  state.page = SHOW[page] ? page : Object.keys(state.pages).find((p) => state.pages[p]) || "dag";
  document.querySelectorAll(".page").forEach((s) => s.classList.toggle("shown", s.id === "page-" + state.page));
  document.querySelectorAll("#tabs a").forEach((a) => a.classList.toggle("active", a.dataset.page === state.page));
  delete document.body.dataset.rendered;
  refresh();
}

async function start() {
  const o = await getJson("/api/overview");
  state.pages = o.pages;
  $("#title").textContent = o.title;
  document.title = "eddy · " + o.title;
  document.querySelectorAll("#tabs a").forEach((a) => a.classList.toggle("empty", !o.pages[a.dataset.page]));
  window.addEventListener("hashchange", route);
  route();
  const events = new EventSource("/api/events");
  events.addEventListener("sample", (e) => {
    state.last = JSON.parse(e.data);
    $("#live").className = "on";
    $("#live").textContent = "live " + new Date(state.last.t).toLocaleTimeString();
    refresh();
  });
  events.onerror = () => { $("#live").className = "off"; $("#live").textContent = "disconnected (retrying)"; };
}

start();
