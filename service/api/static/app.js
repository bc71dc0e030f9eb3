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
  setInterval(refreshRuns, 3000);
}

async function refreshRuns() {
  const rows = [...document.querySelectorAll("#runs tr[data-run]")];
  if (!rows.some((r) => ["queued", "running"].includes(r.dataset.status))) return;
  const { runs } = await api("GET", "/v1/runs?limit=200");
  for (const run of runs) {
    const row = document.querySelector(`#runs tr[data-run="${CSS.escape(run.id)}"]`);
    if (!row) continue;
    row.dataset.status = run.status;
    setBadge(row.querySelector(".badge"), run.status);
    row.querySelector(".metric").textContent = run.metric ? `${run.metric.name} ${run.metric.value.toFixed(4)}` : "";
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
function metricText(m) {
  if (!m) return "–";
  let text = `${m.name} ${m.value.toFixed(4)}`;
  if (m.protocol) text += ` (${m.protocol})`;
  if (m.validation !== null && m.validation !== undefined) text += ` · ${m.validation_protocol} ${m.validation.toFixed(4)}`;
  return text;
}

async function refreshHead(runId) {
  const run = await api("GET", `/v1/runs/${encodeURIComponent(runId)}`);
  setBadge(document.getElementById("run-status"), run.status);
  document.getElementById("run").dataset.status = run.status;
  document.getElementById("run-metric").textContent = metricText(run.metric);
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
  const time = new Date(ev.time).toLocaleTimeString();
  item.textContent = `${time} ${ev.kind}${ev.step ? " " + ev.step : ""}: ${ev.message}`;
  list.appendChild(item);
  while (list.children.length > 200) list.removeChild(list.firstChild);
  list.scrollTop = list.scrollHeight;
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
    if (ev.data.status !== "running") refreshSoon();
  });
  source.addEventListener("progress", (msg) => {
    const ev = JSON.parse(msg.data);
    logEvent(ev);
    const row = document.querySelector(`#steps tr[data-step="${CSS.escape(ev.step || "")}"] .note`);
    if (row) row.textContent = progressNote(ev);
  });
  for (const kind of ["run", "job", "ooda", "cancel_requested", "run_interrupted"]) {
    source.addEventListener(kind, (msg) => { logEvent(JSON.parse(msg.data)); refreshSoon(); });
  }
  source.addEventListener("end", () => { source.close(); refreshHead(runId); refreshPanels(runId); });
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
