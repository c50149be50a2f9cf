// The dashboard: plain JavaScript, no build step, no CDN. It is a client of the console's own API:
// it signs in for a session cookie, keeps the CSRF token in memory and sends it on every change.
// Views are switched by the URL hash; the visible view is polled once a second.
"use strict";

const POLL_MS = 1000;
const state = { csrf: "", role: "", paceLimit: 0, timer: null, form: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const fmt = (n) => Number(n || 0).toLocaleString("en-US");
const money = (n, currency) => `${Number(n || 0).toFixed(4)} ${currency || ""}`.trim();
const when = (t) => (t ? new Date(t * 1000).toLocaleString("sv-SE").slice(0, 19) : "-");

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
  $("who").textContent = `${data.name} (${data.role})`;
  $("nav").hidden = false;
  document.body.classList.toggle("viewer", data.role !== "admin");
  route();
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = await api("POST", "/api/session", { token: $("token").value });
  $("token").value = "";
  if (result.ok) signedIn(result.data);
  else $("sign-in-error").textContent = result.data.error || "sign-in failed";
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
  const total = Math.max(1, c.total);
  for (const [name, n] of parts(c)) {
    const span = el("span", { class: name });
    span.style.width = `${(100 * n) / total}%`;
    node.append(span);
  }
  const delivered = el("span", { class: "delivered" });
  delivered.style.width = `${(100 * (c.delivered || 0)) / total}%`;
  node.append(delivered);
  return node;
}

// -- campaign list ----------------------------------------------------------------------------
async function loadCampaigns() {
  const { ok, data } = await api("GET", "/api/campaigns?limit=50");
  if (!ok) return;
  const rows = data.campaigns.map((c) => {
    const counts = c.counts;
    const live = ["queued", "running"].includes(c.state);
    const pace = live ? `${fmt(Math.round(data.pace[c.id] || 0))} / ${fmt(Math.round(data.pace_limit_per_s))} msg/s` : "-";
    return el("tr", { class: "link", "data-id": c.id, onclick: () => { location.hash = `#/campaign/${c.id}`; } },
      el("td", {}, el("a", { href: `#/campaign/${c.id}`, text: c.name || c.id }), el("div", { class: "muted", text: c.id })),
      el("td", {}, el("span", { class: `state ${c.state}`, text: c.state })),
      el("td", { class: "wide" }, bar(c), el("span", { class: "pct", "data-testid": `progress-${c.id}`,
        text: `${percentDone(c)} %` })),
      el("td", { text: fmt(counts.sent) }), el("td", { text: fmt(counts.failed + counts.rejected) }),
      el("td", { text: fmt(counts.unknown) }), el("td", { text: fmt(counts.pending) }),
      el("td", { text: fmt(c.delivered) }),
      el("td", { text: pace }),
      el("td", { text: money(c.cost, c.currency) }), el("td", { text: when(c.created_at) }));
  });
  $("campaign-rows").replaceChildren(...rows);
  $("list-empty").hidden = rows.length > 0;
}

// -- one campaign -----------------------------------------------------------------------------
async function loadCampaign(cid) {
  const [status, series] = await Promise.all([api("GET", `/api/campaigns/${cid}`),
    api("GET", `/api/campaigns/${cid}/series`)]);
  if (!status.ok) { $("c-error").textContent = status.data.error || ""; return; }
  const c = status.data;
  $("c-title").textContent = `${c.name} (${c.id})`;
  $("c-state").textContent = c.state;
  $("c-state").className = `state ${c.state}`;
  $("c-reason").textContent = c.reason || "";
  $("c-bar").replaceWith(Object.assign(bar(c, true), { id: "c-bar" }));
  $("c-percent").textContent = `${percentDone(c)} % settled (${fmt(c.total - c.counts.pending - c.counts.unknown)} of ${fmt(c.total)})`;
  const admin = state.role === "admin";
  for (const button of document.querySelectorAll("#c-actions button")) {
    const action = button.dataset.action;
    const allowed = { pause: ["queued", "running"], resume: ["paused", "failed", "running"],
      cancel: ["queued", "running", "paused", "failed"] }[action];
    button.disabled = !admin || !allowed.includes(c.state);
    button.onclick = () => act(cid, action);
  }
  $("c-report").href = `/api/campaigns/${cid}/report`;
  $("c-report-parquet").href = `/api/campaigns/${cid}/report?format=parquet`;
  const pace = series.ok ? series.data.pace_per_s : 0;
  const rows = [["Messages", c.total], ...Object.entries(c.counts), ["Delivered", c.delivered],
    ["Undelivered", c.undelivered], ["Pace (msg/s)", `${fmt(Math.round(pace))} of ${fmt(Math.round(state.paceLimit))}`],
    ["Estimated cost", money(c.cost, c.currency)], ["Created", when(c.created_at)], ["Finished", when(c.finished_at)]];
  $("c-counts").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", { text: k }),
    el("td", { "data-testid": `count-${k}`, text: typeof v === "number" ? fmt(v) : v }))));
  if (series.ok) chart(series.data.samples);
  if (!$("c-rejects").dataset.cid || $("c-rejects").dataset.cid !== cid) loadRejects(cid);
}

async function act(cid, action) {
  if (action === "cancel" && !confirm("Cancel this campaign? Messages not yet sent will never be sent.")) return;
  const { ok, data } = await api("POST", `/api/campaigns/${cid}/${action}`);
  $("c-error").textContent = ok ? "" : data.error;
  if (ok) loadCampaign(cid);
}

async function loadRejects(cid) {
  const { ok, data } = await api("GET", `/api/campaigns/${cid}/rejects`);
  if (!ok) return;
  $("c-rejects").dataset.cid = cid;
  reasonsTable($("c-rejects"), data.reasons);
}

function reasonsTable(table, reasons) {
  const entries = Object.entries(reasons || {});
  const head = el("tr", {}, el("th", { text: "Reason" }), el("th", { text: "Rows" }));
  const rows = entries.map(([reason, n]) => el("tr", {}, el("td", { text: reason }), el("td", { text: fmt(n) })));
  table.replaceChildren(head, ...(rows.length ? rows : [el("tr", {}, el("td", { text: "none" }), el("td"))]));
}

function chart(samples) {
  const svg = $("c-chart");
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  const W = 600, H = 220, L = 40, B = 20, T = 10;
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i][0] - samples[i - 1][0];
    rates.push([samples[i][0], dt > 0 ? Math.max(0, (samples[i][5] - samples[i - 1][5]) / dt) : 0]);
  }
  const nodes = [make("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }),
    make("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" })];
  if (samples.length < 2) {
    nodes.push(Object.assign(make("text", { x: L + 10, y: H / 2 }), { textContent: "waiting for samples..." }));
    svg.replaceChildren(...nodes);
    return;
  }
  const t0 = samples[0][0], t1 = samples[samples.length - 1][0];
  const maxRate = Math.max(1, ...rates.map((r) => r[1]));
  const delivered = Math.max(0, ...samples.map((s) => s[3]));
  const maxDlr = Math.max(1, delivered);
  const x = (t) => L + ((W - L - 5) * (t - t0)) / Math.max(1, t1 - t0);
  const width = Math.max(1, (W - L) / Math.max(1, rates.length) - 1);
  for (const [t, r] of rates) {
    const h = ((H - B - T) * r) / maxRate;
    nodes.push(make("rect", { x: x(t) - width, y: H - B - h, width, height: h, class: "rate" }));
  }
  const points = samples.map((s) => `${x(s[0])},${H - B - ((H - B - T) * s[3]) / maxDlr}`).join(" ");
  nodes.push(make("polyline", { points, class: "dlr" }));
  const label = (text, attrs) => Object.assign(make("text", attrs), { textContent: text });
  nodes.push(label(`${fmt(Math.round(maxRate))}/s`, { x: 2, y: T + 8 }), label("0", { x: 28, y: H - B }),
    label(when(t0).slice(11), { x: L, y: H - 5 }), label(when(t1).slice(11), { x: W - 50, y: H - 5 }),
    label(`${fmt(delivered)} delivered`, { x: W - 110, y: T + 8 }));
  svg.replaceChildren(...nodes);
}

// -- upload, preflight, confirm ---------------------------------------------------------------
function formData() {
  const data = new FormData($("upload-form"));
  if (!$("no_hlr").checked) data.set("no_hlr", "0");
  for (const [key, value] of [...data.entries()]) if (value === "") data.delete(key);
  return data;
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("upload-error").textContent = "";
  $("preflight").hidden = true;
  $("check").disabled = true;
  state.form = formData();
  const { status, ok, data } = await api("POST", "/api/preflight", state.form);
  $("check").disabled = false;
  if (!ok) $("upload-error").textContent = data.error || `error ${status}`;
  const preflight = ok ? data : data.preflight;
  if (preflight) showPreflight(preflight, ok);
});

function showPreflight(p, sendable) {
  const currency = p.currency || "";
  const rows = [["File", p.file], ["Rows", fmt(p.rows)], ["Messages to send", fmt(p.messages)],
    ["SMS parts", fmt(p.parts)], ["Rejected rows", fmt(p.rejected)], ["Duplicates (kept once)", fmt(p.duplicates)],
    ["Suppressed", fmt(p.suppressed)], ["HLR lookups", fmt(p.lookups)], ["Total cost", money(p.cost, currency)],
    ["Balance", money(p.balance, currency)]];
  $("pf-totals").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", { text: k }),
    el("td", { "data-testid": `pf-${k}`, text: v }))));
  const reasons = {};
  for (const r of p.rejects || []) reasons[r.reason] = (reasons[r.reason] || 0) + 1;
  const ranked = Object.entries(reasons).sort((a, b) => b[1] - a[1]);
  // An answer lists the first rejects only (DISPATCHER_MAX_ANSWER_REJECTS); the campaign keeps them all.
  const unlisted = (p.rejected || 0) - (p.rejects_listed ?? (p.rejects || []).length);
  if (unlisted > 0) ranked.push(["more rows, not listed here (a submitted campaign lists them all)", unlisted]);
  reasonsTable($("pf-reasons"), Object.fromEntries(ranked));
  $("confirm").textContent = `Send ${fmt(p.messages)} messages for ${money(p.cost, currency)}`;
  $("confirm").disabled = !sendable || state.role !== "admin" || !p.messages;
  $("preflight").hidden = false;
}

$("confirm").addEventListener("click", async () => {
  $("confirm").disabled = true;
  const { ok, data } = await api("POST", "/api/campaigns", state.form);
  if (!ok) { $("upload-error").textContent = data.error; return; }
  $("preflight").hidden = true;
  $("upload-form").reset();
  location.hash = `#/campaign/${data.id}`;
});

// -- schedules --------------------------------------------------------------------------------
async function loadSchedules() {
  const { ok, data } = await api("GET", "/api/schedules");
  if (!ok) return;
  $("schedule-rows").replaceChildren(...data.schedules.map((s) => el("tr", {},
    el("td", { text: s.name }), el("td", { text: s.cron ? `${s.cron} ${s.tz}` : `every ${s.every_s}s` }),
    el("td", { text: when(s.next_run) }), el("td", { text: when(s.last_run) }),
    el("td", { text: s.last_outcome || "-" }), el("td", { text: s.last_campaign || s.last_reason || "" }),
    el("td", {}, el("button", { type: "button", text: "Remove", class: "danger",
      onclick: async () => {
        if (!confirm(`Remove schedule ${s.name}?`)) return;
        await api("DELETE", `/api/schedules/${encodeURIComponent(s.name)}`);
        loadSchedules();
      } })))));
  for (const button of document.querySelectorAll("#schedule-rows button")) button.disabled = state.role !== "admin";
}

// -- start ------------------------------------------------------------------------------------
(async () => {
  const { ok, data } = await api("GET", "/api/session");
  if (ok) signedIn(data); else showSignIn();
})();
