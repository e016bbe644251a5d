"use strict";
// The IT inventory: every unit on the floor, pushed over /ws/inventory (web.py: a snapshot, then
// each unit as it changes, pings), never polled; sorted by a clicked column (again: the other way)
// and filtered by any text in a row. When the socket is not open, or silent past STALE_MS, the page
// says so and reconnects.
const STALE_MS = 12000; // central pings every 5 s
const inv = { units: new Map(), offset: 0, key: "desk", down: false, live: false, lastMessage: 0, retry: 250,
  socket: null, lastLive: null };

function now() { return Date.now() / 1000 + inv.offset; }

function cell(u, key) {
  if (key === "connected") return u.connected ? "connected" : "not connected";
  if (key === "online") return u.online ? "online" : "offline";
  if (key === "last_seen") return u.last_seen ? `${clock(now() - u.last_seen)} ago` : "never";
  return String(u[key] ?? "");
}

function render() {
  const words = document.getElementById("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const keys = [...document.querySelectorAll("#units th")].map((th) => th.dataset.key);
  const units = [...inv.units.values()];
  const rows = units.filter((u) => {
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
  document.getElementById("count").textContent = `${rows.length} of ${units.length} units`;
}

function setLive(live, why) {
  inv.live = live;
  if (live) inv.lastLive = new Date();
  document.body.classList.toggle("not-live", !live);
  const since = inv.lastLive ? ` Last live ${inv.lastLive.toLocaleTimeString()}.` : "";
  document.getElementById("live").textContent = live ? "Live" : `Not live: ${why}. Reconnecting…${since} What you see may be out of date.`;
}

function received(message) {
  inv.offset = message.now - Date.now() / 1000;
  inv.lastMessage = Date.now();
  if (message.type === "snapshot") {
    inv.units = new Map(message.units.map((u) => [`${u.site}/${u.desk}`, u]));
    setLive(true);
  } else if (message.type === "unit") {
    inv.units.set(`${message.unit.site}/${message.unit.desk}`, message.unit);
  }
  if (message.type !== "ping") render();
}

async function refused() {
  // A WebSocket cannot see why it was refused: ask whether the session still holds.
  const me = await fetch("/api/me", { credentials: "same-origin" }).catch(() => null);
  return me !== null && (me.status === 401 || me.status === 403);
}

function connect() {
  const socket = new WebSocket(`wss://${location.host}/ws/inventory`);
  inv.socket = socket;
  let opened = false;
  socket.onopen = () => { opened = true; inv.retry = 250; };
  socket.onmessage = (event) => received(JSON.parse(event.data));
  socket.onclose = async (event) => {
    if (inv.socket !== socket) return;
    inv.socket = null;
    if (event.code === 4401 || (!opened && await refused())) return toLogin("inventory");
    setLive(false, opened ? "lost the connection to central" : "central is not reachable");
    setTimeout(connect, inv.retry);
    inv.retry = Math.min(inv.retry * 2, 2000);
  };
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
  setInterval(() => {
    if (inv.live && Date.now() - inv.lastMessage > STALE_MS) {
      setLive(false, "no word from central");
      if (inv.socket) inv.socket.close();
    }
    if (inv.units.size) render(); // "last seen" counts on
  }, 1000);
  connect();
});
