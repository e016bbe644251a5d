"use strict";
// Firmware rollouts: central pushes each rollout's whole view over one WebSocket as it changes
// (floor/rollout_web.py documents the protocol). One section per rollout, newest first, with its
// progress and a row per unit (its stage, phase, percent and reason). When the socket is not open,
// or silent past STALE_MS, the page says it is not live.
const STALE_MS = 12000; // central pings every 5 s
const BAD = ["failed", "rolled back"];
const DONE = ["confirmed", "up to date"];
const view = { rollouts: new Map(), lastMessage: 0, live: false, lastLive: null, retry: 250, socket: null };

function setLive(live, why) {
  view.live = live;
  if (live) view.lastLive = new Date();
  document.body.classList.toggle("not-live", !live);
  const since = view.lastLive ? ` Last live ${view.lastLive.toLocaleTimeString()}.` : "";
  document.getElementById("live").textContent = live ? "Live" : `Not live: ${why}. Reconnecting…${since} What you see may be out of date.`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function bar(percent) {
  const outer = el("div", "bar");
  const inner = el("div", "fill");
  inner.style.width = `${Math.max(0, Math.min(100, percent))}%`;
  outer.append(inner);
  outer.setAttribute("role", "progressbar");
  outer.setAttribute("aria-valuenow", String(Math.round(percent)));
  return outer;
}

function phaseText(u) {
  return u.phase === "receiving" ? `receiving ${u.percent} %` : u.phase;
}

function section(r) {
  const s = el("section", "rollout");
  s.dataset.rollout = r.name;
  s.dataset.status = r.status;
  const h = el("h2");
  h.append(el("span", "name", r.name), el("span", "what", ` ${r.board} ${r.version} `), el("span", "status", r.status));
  s.append(h);
  const total = Math.max(1, r.targeted);
  const progress = el("div", "progress");
  progress.append(bar((100 * r.done) / total),
    el("span", "counts", `${r.done}/${r.targeted} done, ${r.failed} failed, stage ${r.stage}`));
  s.append(progress);
  if (r.reason) s.append(el("p", "reason", r.reason));
  const table = el("table", "units");
  const head = el("tr");
  for (const t of ["Desk", "Stage", "Phase", "Progress", "Reason"]) head.append(el("th", "", t));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  for (const [desk, u] of Object.entries(r.units)) {
    const tr = el("tr");
    tr.dataset.desk = desk;
    tr.dataset.phase = u.phase;
    if (BAD.includes(u.phase)) tr.className = "unhealthy";
    else if (DONE.includes(u.phase)) tr.className = "done";
    const progressCell = el("td", "percent");
    progressCell.append(bar(DONE.includes(u.phase) ? 100 : u.percent));
    tr.append(el("td", "desk", desk), el("td", "stage", u.stage ? String(u.stage) : "catch-up"),
      el("td", "phase", phaseText(u)), progressCell, el("td", "why", u.reason || ""));
    table.tBodies[0].append(tr);
  }
  s.append(table);
  const skipped = Object.entries(r.skipped);
  if (skipped.length) {
    const list = el("ul", "skipped");
    for (const [desk, why] of skipped.sort()) {
      const li = el("li", "", `${desk} skipped: ${why}`);
      li.dataset.desk = desk;
      list.append(li);
    }
    s.append(list);
  }
  return s;
}

function render(changed) {
  const main = document.getElementById("rollouts");
  const ordered = [...view.rollouts.values()].sort((a, b) => b.created.localeCompare(a.created) || a.name.localeCompare(b.name));
  document.getElementById("none").hidden = ordered.length > 0;
  const shown = ordered.map((r) => {
    const old = main.querySelector(`section[data-rollout="${CSS.escape(r.name)}"]`);
    if (old && changed !== null && !changed.has(r.name)) return old;
    const fresh = section(r);
    if (old) old.replaceWith(fresh);
    return fresh;
  });
  shown.forEach((s, i) => { if (main.children[i + 1] !== s) main.insertBefore(s, main.children[i + 1] || null); });
  while (main.children.length > shown.length + 1) main.lastChild.remove();
}

function received(message) {
  view.lastMessage = Date.now();
  if (message.type === "snapshot") {
    view.rollouts = new Map(message.rollouts.map((r) => [r.name, r]));
    setLive(true);
    render(null);
  } else if (message.type === "rollout") {
    view.rollouts.set(message.rollout.name, message.rollout);
    render(new Set([message.rollout.name]));
  }
}

async function refused() {
  // A WebSocket cannot see why it was refused: ask whether the session still holds.
  const me = await fetch("/api/me", { credentials: "same-origin" }).catch(() => null);
  return me !== null && (me.status === 401 || me.status === 403);
}

function connect() {
  const socket = new WebSocket(`wss://${location.host}/ws/rollouts`);
  view.socket = socket;
  let opened = false;
  socket.onopen = () => { opened = true; view.retry = 250; };
  socket.onmessage = (event) => received(JSON.parse(event.data));
  socket.onclose = async (event) => {
    if (view.socket !== socket) return;
    view.socket = null;
    if (event.code === 4401 || (!opened && await refused())) return toLogin("rollouts");
    setLive(false, opened ? "lost the connection to central" : "central is not reachable");
    setTimeout(connect, view.retry);
    view.retry = Math.min(view.retry * 2, 2000);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  setInterval(() => {
    if (view.live && Date.now() - view.lastMessage > STALE_MS) {
      setLive(false, "no word from central");
      if (view.socket) view.socket.close();
    }
  }, 1000);
  connect();
});
