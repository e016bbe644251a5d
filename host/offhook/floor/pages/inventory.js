"use strict";
// The IT inventory: every unit on the floor, from GET /api/inventory (refreshed every 10 s),
// sorted by a clicked column (again: the other way) and filtered by any text in a row.
const inv = { units: [], now: 0, key: "desk", down: false };

function cell(u, key) {
  if (key === "connected") return u.connected ? "connected" : "not connected";
  if (key === "online") return u.online ? "online" : "offline";
  if (key === "last_seen") return u.last_seen ? `${clock(inv.now - u.last_seen)} ago` : "never";
  return String(u[key] ?? "");
}

function render() {
  const words = document.getElementById("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const keys = [...document.querySelectorAll("#units th")].map((th) => th.dataset.key);
  const rows = inv.units.filter((u) => {
    const text = keys.map((k) => cell(u, k)).join(" ").toLowerCase();
    return words.every((w) => text.includes(w));
  });
  rows.sort((a, b) => {
    const x = a[inv.key] ?? "", y = b[inv.key] ?? "";
    const c = typeof x === "number" || typeof x === "boolean" ? Number(x) - Number(y) : String(x).localeCompare(String(y), undefined, { numeric: true });
    return inv.down ? -c : c;
  });
  const body = document.querySelector("#units tbody");
  body.replaceChildren(...rows.map((u) => {
    const tr = document.createElement("tr");
    tr.dataset.id = `${u.site}/${u.desk}`;
    tr.className = u.online && u.connected ? "" : "unhealthy";
    for (const k of keys) {
      const td = document.createElement("td");
      td.textContent = cell(u, k);
      td.dataset.key = k;
      tr.append(td);
    }
    return tr;
  }));
  for (const th of document.querySelectorAll("#units th")) {
    th.setAttribute("aria-sort", th.dataset.key === inv.key ? (inv.down ? "descending" : "ascending") : "none");
  }
  document.getElementById("count").textContent = `${rows.length} of ${inv.units.length} units`;
}

async function load() {
  let answer;
  try {
    answer = await fetch("/api/inventory", { credentials: "same-origin" });
  } catch (e) {
    document.getElementById("live").textContent = "Central is not reachable; showing the last list.";
    return;
  }
  if (answer.status === 401) return toLogin("inventory");
  if (!answer.ok) {
    document.getElementById("live").textContent = `Refused (${answer.status}).`;
    return;
  }
  const body = await answer.json();
  inv.units = body.units;
  inv.now = body.now;
  document.getElementById("live").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  render();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll("#units th")) {
    th.addEventListener("click", () => {
      inv.down = inv.key === th.dataset.key ? !inv.down : false;
      inv.key = th.dataset.key;
      render();
    });
  }
  document.getElementById("filter").addEventListener("input", render);
  load();
  setInterval(load, 10000);
});
