// The dashboard: plain JavaScript, no build step, no CDN. It is a client of the console's own API:
// it signs in for a session cookie, keeps the CSRF token in memory and sends it on every change.
// Views are switched by the URL hash; the visible view is polled once a second. Everything the
// server sends is written as text (textContent, attributes), never parsed as HTML.
"use strict";

const POLL_MS = 1000;
// The report summary reads every row of a campaign: a live campaign's is refreshed this often (ms).
const SUMMARY_MS = 5000;
const state = { csrf: "", role: "", paceLimit: 0, paceSource: "", timer: null, form: null, editing: null,
  summary: { cid: "", at: 0, data: null, final: false, stamp: "" } };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const fmt = (n) => Number(n || 0).toLocaleString("en-US");
const when = (t) => (t ? new Date(t * 1000).toLocaleString("sv-SE").slice(0, 19) : "-");
const pct = (ratio) => (ratio === null || ratio === undefined ? "-" : `${(100 * ratio).toFixed(1)} %`);

// -- money: decimal strings from the API, rounded as strings (never through floats) ------------
function roundDecimal(value, digits) {
  let text = String(value ?? "0").trim();
  if (!/^-?\d*\.?\d*$/.test(text) || text === "" || text === "-") text = Number(text || 0).toFixed(8);
  const negative = text.startsWith("-");
  if (negative) text = text.slice(1);
  let [whole, fraction = ""] = text.split(".");
  whole = whole || "0";
  fraction = fraction.padEnd(digits + 1, "0");
  const roundUp = Number(fraction[digits]) >= 5; // half away from zero, as an invoice rounds
  let kept = (whole + fraction.slice(0, digits)).split("").map(Number);
  if (roundUp) {
    let i = kept.length - 1;
    while (i >= 0) { if (kept[i] === 9) { kept[i] = 0; i--; } else { kept[i] += 1; break; } }
    if (i < 0) kept = [1, ...kept];
  }
  const digitsText = kept.join("");
  const intPart = digitsText.slice(0, digitsText.length - digits) || "0";
  const grouped = BigInt(intPart).toLocaleString("en-US");
  const out = digits ? `${grouped}.${digitsText.slice(digitsText.length - digits)}` : grouped;
  return negative && /[1-9]/.test(digitsText) ? `-${out}` : out;
}
const exponentOf = (obj) => (Number.isInteger(obj?.currency_exponent) ? obj.currency_exponent : 2);
// A total (a cost, a balance) in the currency's own exponent: 2 decimals for EUR.
const total = (amount, currency, exponent = 2) =>
  (amount === null || amount === undefined ? "-" : `${roundDecimal(amount, exponent)} ${currency || ""}`.trim());
// A unit price: up to 4 decimals, never fewer than the currency's exponent.
function unitPrice(amount, currency, exponent = 2) {
  if (amount === null || amount === undefined) return "-";
  let text = roundDecimal(amount, 4);
  while (text.includes(".") && text.endsWith("0") && text.split(".")[1].length > exponent) text = text.slice(0, -1);
  return `${text} ${currency || ""}`.trim();
}

// -- times: in the recipients' zone and in the viewer's -----------------------------------------
const viewerZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
function inZone(t, zone) {
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone: zone || "UTC", weekday: "short", day: "numeric",
      month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(new Date(t * 1000));
  } catch (_) { return when(t); }
}
function inZoneExact(t, zone) {
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone: zone || "UTC", day: "numeric", month: "short", hour: "2-digit",
      minute: "2-digit", second: "2-digit", hourCycle: "h23" }).format(new Date(t * 1000));
  } catch (_) { return when(t); }
}
function bothZones(t, zone) {
  if (!t) return "-";
  const there = zone || "UTC";
  const mine = viewerZone();
  const text = `${inZone(t, there)} (${there})`;
  return mine === there ? text : `${text}; ${inZone(t, mine)} your time (${mine})`;
}

async function api(method, path, body) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body, credentials: "same-origin" });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/api/session") showSignIn();
  return { status: response.status, ok: response.ok, data };
}
const errorOf = (data, status) => data.error || data.message || `the console answered ${status}`;

// -- sign-in --------------------------------------------------------------------------------
function showSignIn() {
  stopPolling();
  $("nav").hidden = true;
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== "sign-in";
}

function signedIn(data) {
  state.csrf = data.csrf;
  state.role = data.role;
  state.paceLimit = data.pace_limit_per_s;
  // A scoped token says whose campaigns it sees; the server filters them, the page only says so.
  const scope = data.accounts ? `, accounts ${data.accounts.join(", ")}` : "";
  $("who").textContent = `${data.name} (${data.role}${scope})`;
  $("nav").hidden = false;
  document.body.classList.toggle("viewer", data.role !== "admin");
  route();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = await api("POST", "/api/session", { token: $("token").value });
  $("token").value = "";
  if (result.ok) signedIn(result.data);
  else $("sign-in-error").textContent = errorOf(result.data, result.status);
});

$("sign-out").addEventListener("click", async () => {
  await api("DELETE", "/api/session");
  state.csrf = "";
  showSignIn();
});

// -- routing and polling ----------------------------------------------------------------------
function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

function poll(load) {
  stopPolling();
  const tick = async () => {
    try { await load(); } finally { state.timer = setTimeout(tick, POLL_MS); }
  };
  tick();
}

function show(id) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== id;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("current", link.getAttribute("href") === `#/${id === "campaigns" ? "" : id}`);
  }
}

function route() {
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/campaign\/([\w-]+)/);
  if (match) { show("campaign"); poll(() => loadCampaign(match[1])); return; }
  if (hash === "#/new") { stopPolling(); show("new"); return; }
  if (hash === "#/schedules") { show("schedules"); poll(loadSchedules); return; }
  show("campaigns");
  poll(loadCampaigns);
}
window.addEventListener("hashchange", () => { if (state.csrf) route(); });

// -- what a campaign waits for ----------------------------------------------------------------
function waitingText(c) {
  const w = c.waiting_for;
  if (!w) { // an older console: only the worker check is known
    return c.no_worker ? "Waiting for a worker: none is running (start one with `dispatcher worker`)." : "";
  }
  if (!w.kind || w.kind === "none") return "";
  let text = w.sentence || w.kind;
  const zone = w.zone || "UTC";
  // The sentence names the recipients' zone (or UTC); a viewer elsewhere also gets their own time.
  if (w.at && zone !== viewerZone()) text += ` That is ${inZone(w.at, viewerZone())} your time (${viewerZone()}).`;
  return text;
}

function finishText(c) {
  const eta = c.estimated_finish;
  if (!eta || !eta.at) return "";
  const basis = eta.basis === "share" ? "its share of the workers' limit" : "its recent pace";
  return `Estimated finish: ${bothZones(eta.at, eta.zone)}, at ${fmt(Math.round(eta.pace_per_s || 0))} msg/s (${basis}).`;
}

function paceNote(limit, source) {
  const whose = source === "workers" ? "the workers' limit" : "the console's setting (no worker has published a limit)";
  return `Pace limit: ${fmt(Math.round(limit || 0))} msg/s, ${whose}.`;
}

// -- progress bars ----------------------------------------------------------------------------
function parts(c) {
  const counts = c.counts || {};
  const other = (counts.cancelled || 0) + (counts.expired || 0) + (counts.suppressed || 0);
  return [["sent", counts.sent || 0], ["failed", (counts.failed || 0) + (counts.rejected || 0)],
    ["unknown", counts.unknown || 0], ["other", other]];
}

function percentDone(c) {
  if (!c.total) return 100;
  const settled = c.total - ((c.counts || {}).pending || 0) - ((c.counts || {}).unknown || 0);
  return Math.floor((100 * settled) / c.total);
}

function bar(c, big = false) {
  const node = el("div", { class: big ? "bar big" : "bar", title: `${percentDone(c)} % settled` });
  const totalCount = Math.max(1, c.total);
  for (const [name, n] of parts(c)) {
    const span = el("span", { class: name });
    span.style.width = `${(100 * n) / totalCount}%`;
    node.append(span);
  }
  const delivered = el("span", { class: "delivered" });
  delivered.style.width = `${(100 * (c.delivered || 0)) / totalCount}%`;
  node.append(delivered);
  return node;
}

// -- campaign list ----------------------------------------------------------------------------
async function loadCampaigns() {
  const { ok, data } = await api("GET", "/api/campaigns?limit=50");
  if (!ok) return;
  state.paceLimit = data.pace_limit_per_s;
  state.paceSource = data.pace_limit_source || "";
  $("pace-note").textContent = paceNote(data.pace_limit_per_s, data.pace_limit_source);
  const rows = data.campaigns.map((c) => {
    const counts = c.counts;
    const live = ["queued", "running"].includes(c.state);
    const pace = live ? `${fmt(Math.round(data.pace[c.id] || 0))} / ${fmt(Math.round(data.pace_limit_per_s))}` : "-";
    const waiting = waitingText(c);
    const eta = live && c.estimated_finish?.at ? `done ~${inZone(c.estimated_finish.at, viewerZone())}` : "";
    return el("tr", { class: "link", "data-id": c.id, onclick: () => { location.hash = `#/campaign/${c.id}`; } },
      el("td", {}, el("a", { href: `#/campaign/${c.id}`, text: c.name || c.id }), el("div", { class: "muted", text: c.id })),
      el("td", { class: "state-cell" }, el("span", { class: `state ${c.state}`, text: c.state }),
        waiting ? el("div", { class: "why", "data-testid": `waiting-${c.id}`, text: waiting }) : null),
      el("td", { class: "wide" }, bar(c), el("span", { class: "pct", "data-testid": `progress-${c.id}`,
        text: `${percentDone(c)} %` }), eta ? el("div", { class: "muted small", text: eta }) : null),
      el("td", { text: fmt(counts.sent) }), el("td", { text: fmt(counts.failed + counts.rejected) }),
      el("td", { text: fmt(c.delivered) }),
      el("td", { text: pace }),
      el("td", { text: total(c.actual_cost ?? c.cost, c.currency, exponentOf(c)) },
        el("div", { class: "muted small", text: `est. ${total(c.estimated_cost ?? c.cost, c.currency, exponentOf(c))}` })),
      el("td", { text: when(c.created_at) }));
  });
  $("campaign-rows").replaceChildren(...rows);
  $("list-empty").hidden = rows.length > 0;
}

// -- one campaign -----------------------------------------------------------------------------
async function loadCampaign(cid) {
  // The list carries the pace limit the workers publish; one row of it is enough.
  const [status, series, limit] = await Promise.all([api("GET", `/api/campaigns/${cid}`),
    api("GET", `/api/campaigns/${cid}/series`), api("GET", "/api/campaigns?limit=1")]);
  if (limit.ok) { state.paceLimit = limit.data.pace_limit_per_s; state.paceSource = limit.data.pace_limit_source || ""; }
  if (!status.ok) { $("c-error").textContent = errorOf(status.data, status.status); return; }
  const c = status.data;
  const finished = !["queued", "running", "paused"].includes(c.state);
  const summary = await loadSummary(cid, finished, `${c.state}|${c.delivered}|${c.undelivered}`);
  $("c-title").textContent = `${c.name} (${c.id})`;
  $("c-state").textContent = c.state;
  $("c-state").className = `state ${c.state}`;
  const waiting = waitingText(c);
  $("c-waiting").textContent = waiting || (c.reason ? c.reason : "");
  $("c-waiting").className = waiting ? `why ${c.waiting_for?.kind || "no_worker"}` : "muted";
  $("c-eta").textContent = finished ? "" : finishText(c);
  $("c-bar").replaceWith(Object.assign(bar(c, true), { id: "c-bar" }));
  $("c-percent").textContent = `${percentDone(c)} % settled (${fmt(c.total - c.counts.pending - c.counts.unknown)} of ${fmt(c.total)})`;
  const admin = state.role === "admin";
  for (const button of document.querySelectorAll("#c-actions button")) {
    const action = button.dataset.action;
    // Resume only does something for a stopped campaign: a running one has nothing to resume.
    const allowed = { pause: ["queued", "running"], resume: ["paused", "failed"],
      cancel: ["queued", "running", "paused", "failed"] }[action];
    button.disabled = !admin || !allowed.includes(c.state);
    button.onclick = () => act(cid, action);
  }
  $("c-report").href = `/api/campaigns/${cid}/report`;
  $("c-report-xlsx").href = `/api/campaigns/${cid}/report?format=xlsx`;
  $("c-report-parquet").href = `/api/campaigns/${cid}/report?format=parquet`;
  $("c-rejects-csv").href = `/api/campaigns/${cid}/rejects?format=csv`;
  const currency = c.currency, exp = exponentOf(c);
  const s = summary || {};
  const rate = s.delivery_rate || {};
  const tot = s.totals || {};
  const summaryRows = [
    ["Text", c.text ?? s.text ?? (c.text_column ? `from column ${c.text_column}` : "-")],
    ["Sender", c.sender ?? s.sender ?? "-"],
    ["Delivery rate", rate.of_reported === undefined ? "-" : rate.of_reported === null ? "no delivery reports yet"
      : `${pct(rate.of_reported)} of reported (${fmt(tot.delivered)} of ${fmt(tot.reported)}); ${pct(rate.of_sent)} of sent`],
    ["Actual cost", total(s.cost?.actual ?? c.actual_cost, currency, exp)],
    ["Estimated cost", total(s.cost?.estimated ?? c.estimated_cost ?? c.cost, currency, exp)],
    ["Pace (msg/s)", finished ? "-" : `${fmt(Math.round(series.ok ? series.data.pace_per_s : 0))} of ${fmt(Math.round(state.paceLimit))}`
      + (state.paceSource === "workers" ? " (workers' limit)" : "")],
    [`Created (${viewerZone()})`, when(c.created_at)], [`Finished (${viewerZone()})`, when(c.finished_at)]];
  kv($("c-summary"), summaryRows, "summary");
  const counts = [["Messages", c.total], ...Object.entries(c.counts), ["Delivered", c.delivered], ["Undelivered", c.undelivered]];
  kv($("c-counts"), counts, "count");
  if (series.ok) charts(series.data.samples, c, s.timeline);
  events(s.timeline);
  table($("c-countries"), ["Country", "Messages", "Sent", "Parts", "Unit price", "Estimated", "Actual cost", "Delivered",
    "Undelivered", "Delivery rate"], (s.countries || []).map((r) => [r.country, fmt(r.messages), fmt(r.sent), fmt(r.parts),
    unitPrice(r.unit_price, currency, exp), total(r.estimated_cost, currency, exp), total(r.actual_cost, currency, exp),
    fmt(r.delivered), fmt(r.undelivered), pct(r.delivery_rate)]), summary ? "no messages" : "loading...");
  table($("c-undelivered"), ["Code", "Reason", "Status", "Messages"], (s.undelivered || []).map((r) =>
    [r.code || "-", r.reason || "-", r.status || "-", fmt(r.count)]), summary ? "none" : "loading...");
  if ($("c-rejects").dataset.cid !== cid) loadRejects(cid);
}

async function loadSummary(cid, finished, stamp) {
  const cached = state.summary;
  const now = Date.now();
  // A live campaign's summary is kept a few seconds; a finished one's until its delivery counts
  // move (reports keep arriving for minutes after the last send), then at most every few seconds.
  const kept = cached.final && cached.stamp === stamp;
  if (cached.cid === cid && cached.data && (kept || now - cached.at < SUMMARY_MS)) {
    return cached.data;
  }
  const { ok, data } = await api("GET", `/api/campaigns/${cid}/summary`);
  state.summary = { cid, at: now, data: ok ? data : null, final: ok && finished, stamp };
  return state.summary.data;
}

function kv(tableNode, rows, prefix) {
  tableNode.replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: k }),
    el("td", { "data-testid": `${prefix}-${k}`, class: typeof v === "string" && v.length > 30 ? "long" : null,
      text: typeof v === "number" ? fmt(v) : String(v ?? "-") }))));
}

function table(tableNode, head, rows, empty) {
  const header = el("tr", {}, ...head.map((h) => el("th", { text: h })));
  const body = rows.length ? rows.map((cells) => el("tr", {}, ...cells.map((v) => el("td", { text: String(v) }))))
    : [el("tr", {}, el("td", { class: "muted", colspan: String(head.length), text: empty }))];
  tableNode.replaceChildren(el("thead", {}, header), el("tbody", {}, ...body));
}

async function act(cid, action) {
  if (action === "cancel" && !confirm("Cancel this campaign? Messages not yet sent will never be sent.")) return;
  const { ok, status, data } = await api("POST", `/api/campaigns/${cid}/${action}`);
  $("c-error").textContent = ok ? "" : errorOf(data, status);
  state.summary.at = 0;
  if (ok) loadCampaign(cid);
}

async function loadRejects(cid) {
  const { ok, data } = await api("GET", `/api/campaigns/${cid}/rejects`);
  if (!ok) return;
  $("c-rejects").dataset.cid = cid;
  reasonsTable($("c-rejects"), data.reasons);
}

function reasonsTable(tableNode, reasons) {
  const entries = Object.entries(reasons || {}).sort((a, b) => b[1] - a[1]);
  table(tableNode, ["Reason", "Rows"], entries.map(([reason, n]) => [reason, fmt(n)]), "none");
}

function events(timeline) {
  const list = (timeline?.events || []).filter((e) => !["created"].includes(e.kind));
  $("c-events").replaceChildren(...list.map((e) => el("li", { text:
    `${when(e.at).slice(11)} ${e.kind}${e.by ? ` by ${e.by}` : ""}${e.reason && e.reason !== `${e.kind} by user` ? `: ${e.reason}` : ""}` })));
}

// -- charts: one per series, each with its own y-axis; paused stretches shaded --------------------
const SVG = "http://www.w3.org/2000/svg";
function make(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function charts(allSamples, c, timeline) {
  // Samples go on while the console keeps a finished campaign's series: the chart stops at its end.
  const end = c.finished_at || Infinity;
  const samples = allSamples.filter((s) => s[0] <= end + 1);
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i][0] - samples[i - 1][0];
    rates.push([samples[i - 1][0], samples[i][0], dt > 0 ? Math.max(0, (samples[i][5] - samples[i - 1][5]) / dt) : 0]);
  }
  const pauses = (timeline?.pauses || []).map((p) => [p.from, p.to || (samples.at(-1) || [0])[0]]);
  const note = c.finished_at ? "finished before two samples (a second apart) were taken" : "waiting for samples...";
  drawChart($("c-chart-rate"), samples, pauses, note, (frame) => {
    const max = Math.max(1, ...rates.map((r) => r[2]));
    for (const [ta, tb, r] of rates) {
      const h = frame.h * (r / max);
      const x0 = frame.x(ta), x1 = frame.x(tb);
      frame.nodes.push(make("rect", { x: x0, y: frame.bottom - h, width: Math.max(1, x1 - x0 - 1), height: h, class: "rate" }));
    }
    return [`${fmt(Math.round(max))}/s`, "0/s"];
  });
  drawChart($("c-chart-dlr"), samples, pauses, note, (frame) => {
    const max = Math.max(1, ...samples.map((s) => Math.max(s[3], s[4])));
    const line = (i, cls) => frame.nodes.push(make("polyline", { class: cls,
      points: samples.map((s) => `${frame.x(s[0]).toFixed(1)},${(frame.bottom - frame.h * (s[i] / max)).toFixed(1)}`).join(" ") }));
    line(3, "dlr");
    if (samples.some((s) => s[4] > 0)) line(4, "undlr");
    const last = samples.at(-1) || [0, 0, 0, 0, 0];
    frame.nodes.push(make("text", { x: frame.right, y: 12, "text-anchor": "end" },
      `${fmt(last[3])} delivered, ${fmt(last[4])} undelivered`));
    return [fmt(max), "0"];
  });
}

function drawChart(svg, samples, pauses, note, plot) {
  const W = 600, H = 170, L = 56, R = 8, B = 20, T = 18;
  const frame = { nodes: [], bottom: H - B, h: H - B - T, right: W - R };
  frame.nodes.push(make("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
    make("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  if (samples.length < 2) {
    frame.nodes.push(make("text", { x: L + 10, y: H / 2 }, note));
    svg.replaceChildren(...frame.nodes);
    return;
  }
  const t0 = samples[0][0], t1 = samples.at(-1)[0];
  frame.x = (t) => L + ((W - L - R) * (Math.min(Math.max(t, t0), t1) - t0)) / Math.max(1, t1 - t0);
  for (const [a, b] of pauses) {
    if (b < t0 || a > t1) continue;
    frame.nodes.push(make("rect", { x: frame.x(a), y: T, width: Math.max(2, frame.x(b) - frame.x(a)), height: H - B - T,
      class: "paused" }));
  }
  const [top, zero] = plot(frame);
  // Axis labels sit in the left margin, right-aligned against the axis: they never cover the plot.
  frame.nodes.push(make("text", { x: L - 4, y: T + 4, "text-anchor": "end" }, top),
    make("text", { x: L - 4, y: H - B, "text-anchor": "end" }, zero),
    make("text", { x: L, y: H - 5 }, when(t0).slice(11)),
    make("text", { x: W - R, y: H - 5, "text-anchor": "end" }, when(t1).slice(11)));
  svg.replaceChildren(...frame.nodes);
}

// -- upload, preflight, confirm ---------------------------------------------------------------
function formData(form) {
  const data = new FormData(form);
  if (form === $("upload-form") && !$("no_hlr").checked) data.set("no_hlr", "0");
  for (const [key, value] of [...data.entries()]) {
    if (value === "" || (value instanceof File && !value.name)) data.delete(key);
  }
  return data;
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("upload-error").textContent = "";
  $("preflight").hidden = true;
  $("check").disabled = true;
  state.form = formData($("upload-form"));
  const { status, ok, data } = await api("POST", "/api/preflight", state.form);
  $("check").disabled = false;
  if (!ok) $("upload-error").textContent = errorOf(data, status);
  const preflight = ok ? data : data.preflight;
  if (preflight) showPreflight(preflight, ok);
});

function showPreflight(p, sendable) {
  const currency = p.currency || "", exp = exponentOf(p);
  const hlr = p.hlr_estimate;
  const rows = [["File", p.file], ["Rows", fmt(p.rows)], ["Messages to send", fmt(p.messages)],
    ["SMS parts", fmt(p.parts)], ["Rejected rows", fmt(p.rejected)], ["Duplicates (kept once)", fmt(p.duplicates)],
    ["Suppressed", fmt(p.suppressed)]];
  if (p.message_cost !== undefined) rows.push(["Messages cost", total(p.message_cost, currency, exp)]);
  if (p.hlr) {
    rows.push(["HLR lookups", `${fmt(p.lookups)}${p.lookups_cached ? ` (+${fmt(p.lookups_cached)} from the cache)` : ""}`],
      ["HLR cost", total(p.lookup_cost, currency, exp)]);
  } else if (hlr) { // not done: what checking the numbers first would cost
    rows.push(["HLR (not done)", `${fmt(hlr.to_pay)} lookups would cost ${total(hlr.cost, hlr.currency || currency, exp)}`
      + (hlr.cached ? ` (${fmt(hlr.cached)} more answered by the cache)` : "")]);
  } else {
    rows.push(["HLR lookups", "none (HLR off)"]);
  }
  rows.push(["Total cost", total(p.cost, currency, exp)], ["Balance", total(p.balance, currency, exp)]);
  kv($("pf-totals"), rows, "pf");
  table($("pf-preview"), ["Row", "To", "Country", "Parts", "Encoding", "Text"], (p.preview || []).map((m) =>
    [m.row, m.to, m.country || "-", m.parts, m.encoding === "UCS2" || m.encoding === "UCS-2" ? "Unicode" : (m.encoding || "-"),
      m.text]), "no preview");
  const chars = p.unicode_chars || [];
  const unicodeCount = p.unicode ?? chars.reduce((n, ch) => Math.max(n, ch.messages || 0), 0);
  const extra = Number(p.unicode_extra_parts || 0);
  $("pf-unicode-note").textContent = chars.length
    ? `${fmt(unicodeCount)} messages need Unicode (70 characters a part instead of 160) because of the characters below: `
      + (extra ? `they add ${fmt(extra)} parts and ${total(p.unicode_extra_cost, currency, exp)}.`
        : "they still fit in as many parts, so they cost nothing extra.")
    : "Every message fits GSM-7: no character forces Unicode.";
  $("pf-unicode-note").className = chars.length ? "warn" : "muted";
  table($("pf-unicode"), ["Character", "Code point", "Messages"], chars.map((ch) => [ch.char, ch.codepoint, fmt(ch.messages)]), "none");
  $("pf-unicode").hidden = !chars.length;
  const histogram = Object.entries(p.parts_per_message || {}).sort((a, b) => Number(a[0]) - Number(b[0]));
  table($("pf-parts"), ["Parts per message", "Messages"], histogram.map(([n, m]) => [n, fmt(m)]), "-");
  table($("pf-countries"), ["Country", "Messages", "Parts", "Unit price", "Cost"], (p.countries || []).map((r) =>
    [r.country, fmt(r.messages), fmt(r.parts), unitPrice(r.unit_price, currency, exp), total(r.cost, currency, exp)]), "-");
  let reasons = p.reject_reasons;
  if (!reasons) {
    reasons = {};
    for (const r of p.rejects || []) reasons[r.reason] = (reasons[r.reason] || 0) + 1;
    // An answer lists the first rejects only (DISPATCHER_MAX_ANSWER_REJECTS); the campaign keeps them all.
    const unlisted = (p.rejected || 0) - (p.rejects_listed ?? (p.rejects || []).length);
    if (unlisted > 0) reasons["more rows, not listed here (a submitted campaign lists them all)"] = unlisted;
  }
  reasonsTable($("pf-reasons"), reasons);
  const samples = p.sample_rejects || (p.rejects || []).slice(0, 10);
  table($("pf-samples"), ["Row", "Value", "Reason"], samples.map((r) => [r.row, r.value ?? r.phone ?? "", r.reason]), "none");
  $("confirm").textContent = `Send ${fmt(p.messages)} messages for ${total(p.cost, currency, exp)}`;
  $("confirm").disabled = !sendable || state.role !== "admin" || !p.messages;
  $("preflight").hidden = false;
}

$("confirm").addEventListener("click", async () => {
  $("confirm").disabled = true;
  const { ok, status, data } = await api("POST", "/api/campaigns", state.form);
  if (!ok) { $("upload-error").textContent = errorOf(data, status); return; }
  $("preflight").hidden = true;
  $("upload-form").reset();
  location.hash = `#/campaign/${data.id}`;
});

// -- schedules --------------------------------------------------------------------------------
function cadence(s) {
  if (s.cron) return `cron "${s.cron}" in ${s.tz || "UTC"}`;
  return s.every_s ? `every ${fmt(s.every_s)} s` : "-";
}

function scheduleCard(s) {
  const admin = state.role === "admin";
  const zone = s.tz || "UTC";
  const facts = [["When", cadence(s)],
    ["Send window", s.window ? `${s.window}${s.days ? ` on ${s.days}` : ""} (${zone})` : "any time"],
    ["Text", s.text ?? (s.text_column ? `from column ${s.text_column}` : "-")], ["Sender", s.sender || "-"],
    ["List", s.file || "-"], ["Overlap", s.overlap || "-"]];
  const current = s.current_campaign;
  if (current) facts.push(["Current campaign", `${current.id} (${current.state})`]);
  const factsTable = el("table", { class: "kv" });
  kv(factsTable, facts, `sched-${s.name}`);
  if (current) {
    const cell = factsTable.querySelector("tr:last-child td");
    cell.replaceChildren(el("a", { href: `#/campaign/${current.id}`, text: current.id }), ` (${current.state})`);
  }
  const next = s.paused ? [el("li", { text: "none: the schedule is paused" })]
    : (s.next_runs || (s.next_run ? [{ at: s.next_run }] : [])).map((r) => el("li", { text: bothZones(r.at, zone) }));
  const runs = el("table", { class: "list" });
  table(runs, [`Fired at (${zone})`, "Outcome", "Campaign / reason"], (s.runs || (s.last_run ? [{ at: s.last_run, outcome: s.last_outcome,
    campaign: s.last_campaign, reason: s.last_reason }] : [])).slice(0, 5).map((r) =>
    [inZoneExact(r.at, zone), r.outcome || "-", [r.campaign, r.reason].filter(Boolean).join(": ")]), "not fired yet");
  const buttons = admin ? el("div", { class: "actions" },
    el("button", { type: "button", text: "Edit", "data-testid": `edit-${s.name}`, onclick: () => editSchedule(s) }),
    el("button", { type: "button", text: s.paused ? "Resume" : "Pause", "data-testid": `toggle-${s.name}`,
      onclick: () => scheduleAction(s.name, s.paused ? "resume" : "pause") }),
    el("button", { type: "button", text: "Remove", class: "danger", "data-testid": `remove-${s.name}`,
      onclick: () => removeSchedule(s) })) : null;
  return el("article", { class: "card", "data-testid": `schedule-${s.name}` },
    el("h3", {}, el("span", { text: s.name }), el("span", { class: `state ${s.paused ? "paused" : "running"}`,
      text: s.paused ? "paused" : "active" })),
    el("div", { class: "grid" }, factsTable,
      el("div", {}, el("h4", { text: "Next runs" }), el("ul", { class: "events" }, ...next),
        el("h4", { text: "Last firings" }), el("div", { class: "scroll" }, runs))),
    buttons);
}

async function loadSchedules() {
  const { ok, data } = await api("GET", "/api/schedules");
  if (!ok) return;
  $("schedule-cards").replaceChildren(...data.schedules.map(scheduleCard));
  $("schedules-empty").hidden = data.schedules.length > 0;
}

async function scheduleAction(name, action) {
  const { ok, status, data } = await api("POST", `/api/schedules/${encodeURIComponent(name)}/${action}`);
  $("schedule-error").textContent = ok ? "" : errorOf(data, status);
  loadSchedules();
}

const FIELDS = { name: "sf-name", text: "sf-text", cron: "sf-cron", tz: "sf-tz", from: "sf-from", country: "sf-country",
  window: "sf-window", days: "sf-days" };
function editSchedule(s) {
  state.editing = s.name;
  const values = { ...s, from: s.sender, every: s.every_s ? `${s.every_s}s` : "" };
  for (const [key, id] of Object.entries(FIELDS)) $(id).value = values[key] ?? "";
  $("sf-every").value = values.every;
  $("sf-expire").value = s.expire_after_s ? `${s.expire_after_s}s` : "";
  $("sf-priority").value = s.priority || "normal";
  $("sf-name").readOnly = true;
  $("sf-title").textContent = `Edit schedule ${s.name}`;
  $("sf-save").textContent = "Save changes";
  $("sf-reset").hidden = false;
  $("schedule-form").scrollIntoView();
}

function stopEditing() {
  state.editing = null;
  $("schedule-form").reset();
  $("sf-name").readOnly = false;
  $("sf-title").textContent = "New schedule";
  $("sf-save").textContent = "Create schedule";
  $("sf-reset").hidden = true;
}
$("sf-reset").addEventListener("click", stopEditing);

$("schedule-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = formData($("schedule-form"));
  if (!state.editing && !data.has("file")) { $("schedule-error").textContent = "Choose a recipient list for the schedule."; return; }
  const { ok, status, data: answer } = state.editing
    ? await api("PATCH", `/api/schedules/${encodeURIComponent(state.editing)}`, data)
    : await api("POST", "/api/schedules", data);
  $("schedule-error").textContent = ok ? "" : errorOf(answer, status);
  if (ok) { stopEditing(); loadSchedules(); }
});

// Removing a schedule whose campaign hasn't finished asks what to do with that campaign.
function removeSchedule(s) {
  const current = s.current_campaign;
  if (!current) {
    if (confirm(`Remove schedule ${s.name}?`)) doRemove(s.name, "");
    return;
  }
  askCurrent(s.name, current);
}

function askCurrent(name, current) {
  $("rd-text").textContent = `Schedule ${name} has a campaign that hasn't finished: ${current.id} (${current.state}). `
    + "Keep it (it sends as planned) or cancel it (its unsent messages are never sent)?";
  const dialog = $("remove-dialog");
  $("rd-keep").onclick = () => { dialog.close(); doRemove(name, "keep"); };
  $("rd-cancel").onclick = () => { dialog.close(); doRemove(name, "cancel"); };
  $("rd-back").onclick = () => dialog.close();
  dialog.showModal();
}

async function doRemove(name, current) {
  const query = current ? `?current=${current}` : "";
  const { ok, status, data } = await api("DELETE", `/api/schedules/${encodeURIComponent(name)}${query}`);
  if (status === 409 && data.current_campaign) { askCurrent(name, data.current_campaign); return; }
  $("schedule-error").textContent = ok ? "" : errorOf(data, status);
  if (ok && state.editing === name) stopEditing();
  loadSchedules();
}

// -- start ------------------------------------------------------------------------------------
(async () => {
  const { ok, data } = await api("GET", "/api/session");
  if (ok) signedIn(data); else showSignIn();
})();
