// agentml dashboard: log in, start and cancel runs, follow a run live (server-sent events). No framework.
"use strict";

const TOKEN = "agentml_token";

function readCookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : null;
}

function token() {
  return sessionStorage.getItem(TOKEN) || readCookie(TOKEN);
}

function saveToken(value) {
  sessionStorage.setItem(TOKEN, value);
  // pages and EventSource (which cannot send headers) authenticate with this cookie, for GET requests only
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${TOKEN}=${encodeURIComponent(value)}; path=/; SameSite=Strict${secure}`;
}

function logout() {
  sessionStorage.removeItem(TOKEN);
  document.cookie = `${TOKEN}=; path=/; max-age=0; SameSite=Strict`;
  location.assign("/login");
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.error ? data.error.message : response.statusText), { data });
  return data;
}

function problemsText(err) {
  const e = (err.data && err.data.error) || {};
  const lines = [e.message || err.message];
  for (const p of e.problems || []) lines.push(`• ${[p.step, p.field].filter(Boolean).join(".")}${p.step || p.field ? ": " : ""}${p.message}${p.hint ? " (" + p.hint + ")" : ""}`);
  if ((e.candidates || []).length) lines.push("Candidates: " + e.candidates.join(", "));
  if (e.hint) lines.push(e.hint);
  return lines.join("\n");
}

function showError(el, text) {
  el.textContent = text;
  el.hidden = !text;
  el.style.whiteSpace = "pre-line";
}

// ---- login ------------------------------------------------------------------------------------------------------
function initLogin() {
  const form = document.getElementById("login-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = document.getElementById("token").value.trim();
    try {
      const r = await fetch("/v1/me", { headers: { Authorization: `Bearer ${value}` } });
      if (!r.ok) throw new Error("This token is not valid.");
      saveToken(value);
      location.assign(form.dataset.next || "/");
    } catch (err) {
      showError(document.getElementById("login-error"), err.message);
    }
  });
}

// ---- runs list ----------------------------------------------------------------------------------------------------
function numberOrNull(id) {
  const v = document.getElementById(id).value;
  return v === "" ? null : Number(v);
}

function initRuns() {
  const form = document.getElementById("new-run");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { prompt: document.getElementById("prompt").value.trim() };
    const target = document.getElementById("target").value.trim();
    if (target) body.target = target;
    const budget = {};
    const trials = numberOrNull("max-trials"), rounds = numberOrNull("max-rounds");
    if (trials) budget.max_trials = trials;
    if (rounds) budget.max_boosting_rounds = rounds;
    if (Object.keys(budget).length) body.budget = budget;
    body.iterations = numberOrNull("iterations") || 0;
    const button = document.getElementById("start-run");
    button.disabled = true;
    try {
      const created = await api("POST", "/v1/runs", body);
      location.assign(created.links.dashboard);
    } catch (err) {
      showError(document.getElementById("new-run-error"), problemsText(err));
      button.disabled = false;
    }
  });
  initPicks();
  for (const button of document.querySelectorAll("#runs button.toggle")) button.addEventListener("click", () => toggleChildren(button));
  setInterval(refreshRuns, 3000);
}

function initPicks() {
  const compare = document.getElementById("compare-runs");
  const picked = () => [...document.querySelectorAll("#runs input.pick:checked")].map((b) => b.value);
  for (const box of document.querySelectorAll("#runs input.pick")) {
    box.addEventListener("change", () => {
      const n = picked().length;
      compare.disabled = n < 2 || n > 10;
      compare.textContent = n ? `Compare ${n} selected` : "Compare selected";
    });
  }
  compare.addEventListener("click", () => location.assign(`/compare?runs=${picked().map(encodeURIComponent).join(",")}`));
}

function toggleChildren(button) {
  const open = button.getAttribute("aria-expanded") !== "true";
  button.setAttribute("aria-expanded", String(open));
  button.textContent = (open ? "▾ " : "▸ ") + button.textContent.slice(2);
  for (const row of document.querySelectorAll(`#runs tr.child[data-parent="${CSS.escape(button.dataset.run)}"]`)) row.hidden = !open;
}

function metricText(m) {
  return m ? `${m.label || m.name} ${m.value.toFixed(4)}` : "";
}

async function refreshRuns() {
  const rows = [...document.querySelectorAll("#runs tr[data-run]")];
  if (!rows.some((r) => ["queued", "running"].includes(r.dataset.status))) return;
  const ids = rows.filter((r) => ["queued", "running"].includes(r.dataset.status)).map((r) => r.dataset.run);
  for (const id of ids.slice(0, 20)) {
    const run = await api("GET", `/v1/runs/${encodeURIComponent(id)}`);
    const row = document.querySelector(`#runs tr[data-run="${CSS.escape(run.id)}"]`);
    if (!row) continue;
    row.dataset.status = run.status;
    setBadge(row.querySelector(".badge"), run.status);
    row.querySelector(".metric").textContent = metricText(run.metric);
    row.querySelector(".steps").textContent = `${run.steps_done}/${run.steps_total}`;
  }
}

function setBadge(el, status) {
  if (!el) return;
  el.className = `badge st-${status}`;
  el.textContent = status;
}

// ---- one run ------------------------------------------------------------------------------------------------------
function setStep(stepId, status, note) {
  const node = document.querySelector(`#dag g.node[data-step="${CSS.escape(stepId)}"]`);
  if (node) {
    node.setAttribute("class", `node st-${status}`);
    node.querySelector("text.state").textContent = status;
  }
  const row = document.querySelector(`#steps tr[data-step="${CSS.escape(stepId)}"]`);
  if (row) {
    setBadge(row.querySelector(".badge"), status);
    if (note !== undefined) row.querySelector(".note").textContent = note;
  }
}

async function refreshPanels(runId) {
  const response = await fetch(`/runs/${encodeURIComponent(runId)}/panels`);
  if (response.ok) document.getElementById("panels").innerHTML = await response.text();
}

// The headline as the server renders it (run.html): the cross-validated number and its protocol, the validation
// number (the rows that tuned the model) beside it.
async function refreshHead(runId) {
  const run = await api("GET", `/v1/runs/${encodeURIComponent(runId)}`);
  setBadge(document.getElementById("run-status"), run.status);
  document.getElementById("run").dataset.status = run.status;
  const holdout = run.metric && run.metric.holdout !== null ? ` (validation, used for tuning: ${run.metric.holdout.toFixed(4)})` : "";
  document.getElementById("run-metric").textContent = run.metric ? metricText(run.metric) + holdout : "–";
  const job = document.getElementById("job-status");
  if (job && run.job) job.textContent = run.job.status;
  const finished = !["queued", "running"].includes(run.status);
  document.getElementById("cancel-run").hidden = finished;
  if (run.steps.some((s) => s.skill === "report" && s.status === "succeeded")) document.getElementById("report-link").hidden = false;
  for (const s of run.steps) {
    const note = s.error ? s.error + (s.hint ? " — " + s.hint : "") : undefined;
    setStep(s.id, s.status, note);
    const cell = document.querySelector(`#steps tr[data-step="${CSS.escape(s.id)}"] td.num`);
    if (cell && s.duration_s !== null) cell.textContent = s.duration_s.toFixed(1);
  }
  if (run.error) showError(document.getElementById("run-error"), run.error + (run.hint ? " — " + run.hint : ""));
  return run;
}

function logEvent(ev) {
  const list = document.getElementById("events");
  const item = document.createElement("li");
  const time = utc(ev.time).slice(11);
  item.textContent = `${time} ${ev.kind}${ev.step ? " " + ev.step : ""}: ${ev.message}`;
  list.appendChild(item);
  while (list.children.length > 200) list.removeChild(list.firstChild);
  list.scrollTop = list.scrollHeight;
}

// one timezone everywhere: UTC, "YYYY-MM-DD HH:MM:SS", as the server renders it
function utc(iso) {
  return new Date(iso).toISOString().slice(0, 19).replace("T", " ");
}

// ---- live learning curves: the points of each step's progress reports, drawn as they arrive -----------------------
const SVG = "http://www.w3.org/2000/svg";
const live = { series: new Map(), metric: "" };

function addLivePoints(ev) {
  const d = ev.data || {};
  if (!Array.isArray(d.points) || !d.points.length) return;
  const key = ev.step || "";
  if (!live.series.has(key)) live.series.set(key, []);
  const points = live.series.get(key);
  for (const [round, value] of d.points) {
    if (points.length && round <= points[points.length - 1][0]) points.length = points.findIndex((p) => p[0] >= round);  // a restarted fit
    if (Number.isFinite(value)) points.push([round, value]);
  }
  live.metric = d.metric || live.metric;
  drawLive();
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawLive() {
  const svg = document.getElementById("live-chart");
  if (!svg) return;
  document.getElementById("live").hidden = false;
  const all = [...live.series.values()].flat();
  if (!all.length) return;
  const W = 640, H = 220, L = 56, R = 120, T = 12, B = 30;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-9);
  const px = (x) => L + (x - x0) / (x1 - x0) * (W - L - R), py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  svg.replaceChildren();
  svg.appendChild(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  svg.appendChild(svgEl("text", { x: L - 6, y: T + 10, "text-anchor": "end", class: "tick" }, y1.toFixed(4)));
  svg.appendChild(svgEl("text", { x: L - 6, y: H - B, "text-anchor": "end", class: "tick" }, y0.toFixed(4)));
  svg.appendChild(svgEl("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "tick" }, `round ${x1}`));
  svg.appendChild(svgEl("text", { x: 4, y: H - 8, class: "tick" }, live.metric));
  let i = 0;
  for (const [step, points] of live.series) {
    const colour = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#c53030"][i % 5];
    const d = points.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ");
    svg.appendChild(svgEl("polyline", { points: d, fill: "none", stroke: colour, "stroke-width": 1.8, "data-step": step, "data-points": points.length, class: "live-line" }));
    const last = points[points.length - 1];
    svg.appendChild(svgEl("text", { x: W - R + 6, y: T + 14 + 16 * i, fill: colour, class: "tick" }, `${step}: ${last[1].toFixed(4)} @${last[0]}`));
    i += 1;
  }
}

// ---- artifact browser --------------------------------------------------------------------------------------------
function humanSize(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

async function refreshArtifacts(runId) {
  const body = document.querySelector("#artifact-list tbody");
  if (!body) return;
  let listed;
  try { listed = await api("GET", `/v1/runs/${encodeURIComponent(runId)}/artifacts`); } catch (err) { return; }
  body.replaceChildren();
  for (const a of listed.artifacts) {
    const row = document.createElement("tr");
    row.dataset.kind = a.kind;
    const link = Object.assign(document.createElement("a"), { href: a.download, textContent: a.path });
    link.setAttribute("download", a.path.split("/").pop());
    const cells = [link, a.run === runId ? "this run" : a.run, a.kind, humanSize(a.size)];
    cells.forEach((c, k) => {
      const td = document.createElement("td");
      if (k === 3) td.className = "num";
      td.append(c);
      row.appendChild(td);
    });
    body.appendChild(row);
  }
}

function progressNote(ev) {
  const d = ev.data || {};
  if (d.done !== null && d.done !== undefined && d.total) return `${ev.message} (${d.done}/${d.total} ${d.unit || ""})`.trim();
  return ev.message;
}

function initRun() {
  const box = document.getElementById("run");
  const runId = box.dataset.run;
  document.getElementById("cancel-run").addEventListener("click", async () => {
    try { await api("POST", `/v1/runs/${encodeURIComponent(runId)}/cancel`); } catch (err) { showError(document.getElementById("run-error"), problemsText(err)); }
  });
  const source = new EventSource(`/v1/runs/${encodeURIComponent(runId)}/events`);
  let pending = null;
  const refreshSoon = () => {  // many events in a burst: one refresh
    clearTimeout(pending);
    pending = setTimeout(() => { refreshHead(runId); refreshPanels(runId); }, 300);
  };
  source.addEventListener("step", (msg) => {
    const ev = JSON.parse(msg.data);
    logEvent(ev);
    setStep(ev.step, ev.data.status, ev.data.error || "");
    if (ev.data.status !== "running") { refreshSoon(); refreshArtifacts(runId); }
  });
  source.addEventListener("progress", (msg) => {
    const ev = JSON.parse(msg.data);
    logEvent(ev);
    addLivePoints(ev);
    const row = document.querySelector(`#steps tr[data-step="${CSS.escape(ev.step || "")}"] .note`);
    if (row) row.textContent = progressNote(ev);
  });
  for (const kind of ["run", "job", "ooda", "cancel_requested", "run_interrupted"]) {
    source.addEventListener(kind, (msg) => { logEvent(JSON.parse(msg.data)); refreshSoon(); });
  }
  source.addEventListener("end", () => { source.close(); refreshHead(runId); refreshPanels(runId); refreshArtifacts(runId); });
  refreshArtifacts(runId);
}

// ---- start --------------------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  const logoutButton = document.getElementById("logout");
  if (logoutButton) logoutButton.addEventListener("click", logout);
  const page = document.body.dataset.page;
  if (page === "login") initLogin();
  else if (page === "runs") initRuns();
  else if (page === "run") initRun();
});
