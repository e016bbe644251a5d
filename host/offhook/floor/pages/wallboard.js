"use strict";
// The wallboard: central pushes every change over one WebSocket (web.py documents the protocol);
// this page only counts the seconds between messages, from the desks' own times corrected by
// central's clock. When the socket is not open, or silent past STALE_MS, the page says so.
const LABELS = { offline: "Offline", available: "Available", ringing: "Ringing", on_call: "On call",
  on_hold: "On hold", wrap_up: "Wrap-up", break: "Break" };
const TOTAL_OF = { available: "available", ringing: "on_call", on_call: "on_call", on_hold: "on_call",
  wrap_up: "wrap_up", break: "break", offline: "offline" };
const STALE_MS = 12000; // central pings every 5 s
const board = { tiles: new Map(), figures: [], holdReminder: 120, offset: 0, lastMessage: 0, live: false,
  lastLive: null, retry: 250, socket: null };

function now() { return Date.now() / 1000 + board.offset; }

function filter() {
  return { site: document.getElementById("site").value, team: document.getElementById("team").value };
}
function kept(item, f) {
  return (!f.site || item.site === f.site) && (!f.team || item.team === f.team);
}

function setLive(live, why) {
  board.live = live;
  if (live) board.lastLive = new Date();
  document.body.classList.toggle("not-live", !live);
  const since = board.lastLive ? ` Last live ${board.lastLive.toLocaleTimeString()}.` : "";
  document.getElementById("live").textContent = live ? "Live" : `Not live: ${why}. Reconnecting…${since} What you see may be out of date.`;
}

function options(select, values) {
  const chosen = select.value;
  const have = [...select.options].map((o) => o.value).slice(1).join("\n");
  if (have === values.join("\n")) return;
  select.length = 1;
  for (const v of values) select.add(new Option(v, v));
  select.value = values.includes(chosen) ? chosen : "";
}

function tileElement(t) {
  let el = document.getElementById(`tile-${t.id}`);
  if (!el) {
    el = document.createElement("article");
    el.id = `tile-${t.id}`;
    el.className = "tile";
    el.dataset.id = t.id;
    el.innerHTML = '<h2 class="desk"></h2><p class="agent"></p><p class="status"></p>' +
      '<p class="in-state"></p><p class="call"></p><p class="hold"></p>';
  }
  return el;
}

function render() {
  const f = filter();
  const tiles = [...board.tiles.values()].sort((a, b) => a.id.localeCompare(b.id));
  options(document.getElementById("site"), [...new Set(tiles.map((t) => t.site))].sort());
  options(document.getElementById("team"), [...new Set(tiles.map((t) => t.team).filter(Boolean))].sort());
  const main = document.getElementById("tiles");
  const totals = { available: 0, on_call: 0, wrap_up: 0, break: 0, offline: 0 };
  const t0 = now();
  let longest = null;
  const shown = [];
  for (const t of tiles) {
    if (!kept(t, f)) continue;
    totals[TOTAL_OF[t.status] || "offline"] += 1;
    const el = tileElement(t);
    el.dataset.status = t.status;
    el.querySelector(".desk").textContent = t.desk;
    el.querySelector(".agent").textContent = t.agent || "";
    el.querySelector(".status").textContent = LABELS[t.status] || t.status;
    el.querySelector(".in-state").textContent = t.since ? clock(t0 - t.since) : "";
    el.querySelector(".call").textContent = t.call_since ? `Call ${clock(t0 - t.call_since)}` : "";
    const hold = el.querySelector(".hold");
    if (t.status === "on_hold" && t.hold_since) {
      const held = t0 - t.hold_since;
      longest = longest === null ? held : Math.max(longest, held);
      hold.textContent = `On hold ${clock(held)}`;
      el.classList.toggle("long-hold", held >= board.holdReminder);
    } else {
      hold.textContent = "";
      el.classList.remove("long-hold");
    }
    shown.push(el);
  }
  // Keep the order, touch the DOM only where it changed.
  shown.forEach((el, i) => { if (main.children[i] !== el) main.insertBefore(el, main.children[i] || null); });
  while (main.children.length > shown.length) main.lastChild.remove();
  for (const [k, v] of Object.entries(totals)) document.getElementById(`total-${k}`).textContent = v;
  const sum = { calls: 0, handled: 0, missed: 0, handle_s: 0, ring_s: 0, rung: 0 };
  for (const g of board.figures) if (kept(g, f)) for (const k of Object.keys(sum)) sum[k] += g[k];
  document.getElementById("fig-aht").textContent = sum.handled ? clock(sum.handle_s / sum.handled) : "–";
  document.getElementById("fig-asa").textContent = sum.rung ? `${Math.round(sum.ring_s / sum.rung)} s` : "–";
  document.getElementById("fig-missed").textContent = sum.calls ? `${(100 * sum.missed / sum.calls).toFixed(1)} %` : "–";
  document.getElementById("fig-calls").textContent = String(sum.calls);
  const hold = document.getElementById("fig-hold");
  hold.textContent = longest === null ? "–" : clock(longest);
  hold.classList.toggle("long-hold", longest !== null && longest >= board.holdReminder);
}

function received(message) {
  board.offset = message.now - Date.now() / 1000;
  board.lastMessage = Date.now();
  if (message.type === "snapshot") {
    board.tiles = new Map(message.tiles.map((t) => [t.id, t]));
    board.figures = message.figures;
    board.holdReminder = message.hold_reminder_s;
    setLive(true);
  } else if (message.type === "tile") {
    board.tiles.set(message.tile.id, message.tile);
  } else if (message.type === "figures") {
    board.figures = message.figures;
  }
  if (message.type !== "ping") render();
}

async function refused() {
  // A WebSocket cannot see why it was refused: ask whether the session still holds.
  const me = await fetch("/api/me", { credentials: "same-origin" }).catch(() => null);
  return me !== null && (me.status === 401 || me.status === 403);
}

function connect() {
  const socket = new WebSocket(`wss://${location.host}/ws/wallboard`);
  board.socket = socket;
  let opened = false;
  socket.onopen = () => { opened = true; board.retry = 250; };
  socket.onmessage = (event) => received(JSON.parse(event.data));
  socket.onclose = async (event) => {
    if (board.socket !== socket) return;
    board.socket = null;
    if (event.code === 4401 || (!opened && await refused())) return toLogin("wallboard");
    setLive(false, opened ? "lost the connection to central" : "central is not reachable");
    setTimeout(connect, board.retry);
    board.retry = Math.min(board.retry * 2, 500);  // back within 2 s of central
  };
}

document.addEventListener("DOMContentLoaded", () => {
  for (const id of ["site", "team"]) document.getElementById(id).addEventListener("change", render);
  setInterval(() => {
    if (board.live && Date.now() - board.lastMessage > STALE_MS) {
      setLive(false, "no word from central");
      if (board.socket) board.socket.close();
    }
    if (board.tiles.size) render();
  }, 250);
  connect();
});
