"use strict";
// The IT settings view: a desk's effective settings with their source layer (GET /api/settings?desk=),
// every layer's values, and set/unset of one key in one layer (POST /api/settings; checked by central).
// The desk shown is read again every few seconds: a change shows as effective once the desk applied it.

let shown = "";  // the desk whose settings are on the page

function rowOf(cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

async function ask(path, options) {
  let answer;
  try {
    answer = await fetch(path, { credentials: "same-origin", ...options });
  } catch (e) {
    document.getElementById("live").textContent = "Central is not reachable.";
    return null;
  }
  if (answer.status === 401) { toLogin("settings"); return null; }
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    document.getElementById("answer").textContent = body.error || `Refused (${answer.status}).`;
    return null;
  }
  return body;
}

async function showDesk(desk) {
  shown = desk;
  const view = await ask(`/api/settings?desk=${encodeURIComponent(desk)}`);
  if (!view) return;
  const report = view.report;
  const rows = report ? { ...report.effective, ...((report.unit || {}).effective || {}) } : {};
  document.getElementById("summary").textContent = report
    ? `${view.site}/${view.desk} (team ${view.team || "–"}): version ${report.version} in effect, central at ${view.central_version}` +
      (report.pending ? `; version ${report.pending} waits for the desk to be idle` : "") +
      (report.refused ? `; refused a policy: ${report.refused}` : "") +
      (report.unit && report.unit.version ? `; unit settings ${report.unit.state}` : "")
    : `${view.site}/${view.desk}: no report from the desk yet`;
  document.querySelector("#effective tbody").replaceChildren(...Object.keys(rows).sort().map((key) =>
    rowOf([key, JSON.stringify(rows[key].value), rows[key].source, rows[key].locked ? "locked" : ""])));
}

async function loadLayers() {
  const view = await ask("/api/settings");
  if (!view) return;
  document.getElementById("live").textContent = `Settings version ${view.central_version}`;
  document.querySelector("#layers tbody").replaceChildren(...view.rows.map((r) =>
    rowOf([r.layer, r.target, r.key, JSON.stringify(r.value), r.locked ? "locked" : ""])));
}

function typed(text) {
  if (/^-?\d+$/.test(text)) return parseInt(text, 10);
  if (/^-?[\d.]+(e-?\d+)?$/i.test(text)) return parseFloat(text);
  if (text === "true" || text === "false") return text === "true";
  if (text.startsWith("[") || text.startsWith("{")) { try { return JSON.parse(text); } catch (e) { return text; } }
  return text;
}

async function change(unset) {
  const pair = document.getElementById("pair").value.trim();
  const [key, ...rest] = pair.split("=");
  const body = { layer: document.getElementById("layer").value, target: document.getElementById("target").value.trim() };
  if (unset) body.unset = [key];
  else {
    body.set = { [key]: typed(rest.join("=")) };
    body.lock = document.getElementById("lock").checked;
  }
  const done = await ask("/api/settings", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!done) return;
  document.getElementById("answer").textContent = `Version ${done.version}: saved; each desk applies it when idle.`;
  loadLayers();
  const desk = document.getElementById("desk").value.trim();
  if (desk) showDesk(desk);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("show").addEventListener("submit", (e) => {
    e.preventDefault();
    showDesk(document.getElementById("desk").value.trim());
  });
  document.getElementById("change").addEventListener("submit", (e) => { e.preventDefault(); change(false); });
  document.getElementById("unset").addEventListener("click", () => change(true));
  loadLayers();
  setInterval(loadLayers, 10000);
  setInterval(() => { if (shown) showDesk(shown); }, 3000);
});
