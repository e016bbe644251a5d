// offhook agent panel: renders the daemon's state pushed over the local API.
// The one-time token comes in the URL fragment (never sent to a server, never in the
// page) and is dropped from the address bar at once. Message shapes: docs/panel.md.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const CALL_LABELS = { idle: "No call", ringing: "Ringing", dialing: "Dialing", active: "Talking", held: "On hold" };

  // The last state and when it arrived: timers count on locally from there.
  let state = null;
  let receivedAt = 0;
  let ringSeenAt = null; // the state carries no ring start: count from when we saw it ring
  let nextId = 1;

  function fragmentToken() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    const token = params.get("token");
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return token;
  }

  function clock(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
    const whole = Math.max(0, Math.floor(seconds));
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = String(whole % 60).padStart(2, "0");
    return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function setConnection(text, lost) {
    const el = $("connection");
    el.textContent = text;
    el.classList.toggle("lost", Boolean(lost));
  }

  function showNotice(text) {
    const el = $("notice");
    el.textContent = text || "";
    el.hidden = !text;
  }

  function currentCall() {
    if (!state || !Array.isArray(state.calls) || state.calls.length === 0) return null;
    return state.calls.find((c) => c.state === "active" || c.state === "held") || state.calls[0];
  }

  function applyState(next) {
    const before = currentCall();
    state = next;
    receivedAt = performance.now();
    const call = currentCall();
    if (call && (call.state === "ringing" || call.state === "dialing")) {
      if (!before || before.id !== call.id || ringSeenAt === null) ringSeenAt = receivedAt;
    } else {
      ringSeenAt = null;
    }
    render();
  }

  function elapsed() {
    return (performance.now() - receivedAt) / 1000;
  }

  function render() {
    if (!state) return;
    const agent = state.agent || "offline";
    const badge = $("agent-state");
    badge.textContent = agent.replace("_", " ");
    badge.className = `badge agent-${agent}`;

    const call = currentCall();
    const wrapLeft = state.wrap_up_remaining_s;
    const look = call ? call.state : agent === "wrap_up" ? "wrap_up" : "idle";
    const card = $("call");
    card.className = `card call-${look}`;
    $("call-state").textContent = call ? CALL_LABELS[call.state] || call.state : agent === "wrap_up" ? "Wrap-up" : "No call";
    $("peer").textContent = call ? `${call.direction === "outbound" ? "to" : "from"} ${call.peer || "unknown"}` : "\u00a0";

    const mute = $("mute");
    mute.hidden = !(call && state.muted);
    mute.classList.toggle("unconfirmed", state.mute_confirmed === false);
    mute.textContent = state.mute_confirmed === false ? "muted?" : "muted";

    const dt = elapsed();
    if (call && (call.state === "ringing" || call.state === "dialing")) {
      $("main-timer-label").textContent = call.state === "ringing" ? "Ringing for" : "Dialing for";
      $("main-timer").textContent = clock(ringSeenAt === null ? 0 : (performance.now() - ringSeenAt) / 1000);
    } else if (call && call.talk_s !== null && call.talk_s !== undefined) {
      $("main-timer-label").textContent = "Call time";
      $("main-timer").textContent = clock(call.talk_s + dt);
    } else {
      $("main-timer-label").textContent = "Call time";
      $("main-timer").textContent = "–";
    }

    const held = Boolean(call && call.held_s !== null && call.held_s !== undefined);
    $("hold-block").hidden = !held;
    $("reminder-block").hidden = !(held && call.next_hold_reminder_s !== null);
    if (held) {
      $("hold-timer").textContent = clock(call.held_s + dt);
      const left = call.next_hold_reminder_s - dt;
      $("hold-countdown").textContent = clock(left);
      $("reminder-block").classList.toggle("overdue", left <= 0);
    }

    const wrapping = agent === "wrap_up" && wrapLeft !== null && wrapLeft !== undefined;
    $("wrap-block").hidden = !wrapping;
    if (wrapping) $("wrap-timer").textContent = clock(wrapLeft - dt);
  }

  function applyFigures(f) {
    if (!f) return;
    $("figures-date").textContent = f.date || f.group || "";
    $("fig-calls").textContent = String(f.calls ?? "–");
    $("fig-handled").textContent = String(f.handled ?? "–");
    $("fig-missed").textContent = `${(f.missed ?? 0) + (f.abandoned ?? 0)}`;
    $("fig-aht").textContent = clock(f.aht_s);
    $("fig-talk").textContent = clock(f.talk_mean_s);
    $("fig-hold").textContent = clock(f.hold_mean_s);
    $("fig-wrap").textContent = clock(f.wrap_mean_s);
    $("fig-long-holds").textContent = String(f.long_holds ?? "–");
  }

  function onMessage(data) {
    if (data.type === "welcome") {
      setConnection("connected");
      send({ type: "subscribe" });
      send({ type: "figures" });
      return;
    }
    if (data.type === "event") {
      if (data.event === "state") applyState(data);
      else if (data.event === "figures") applyFigures(data.figures || data);
      else if (data.event === "hold_reminder") showNotice("Check in with the customer on hold.");
      else if (data.event === "missed_call") showNotice("Missed call: you were set to break.");
      else if (data.event === "established" || data.event === "closed") showNotice("");
      return;
    }
    if (data.ok === true && data.state) applyState(data.state);
    if (data.ok === true && data.figures) applyFigures(data.figures);
  }

  let socket = null;
  function send(body) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ id: nextId++, ...body }));
  }

  function connect() {
    const token = fragmentToken();
    if (!window.location.host) {
      setConnection("open this page with `offhook panel`", true);
      return;
    }
    if (!token) {
      setConnection("no token: open this page with `offhook panel`", true);
      return;
    }
    socket = new WebSocket(`ws://${window.location.host}/api`);
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", token })));
    socket.addEventListener("message", (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return; // not JSON: not for us
      }
      onMessage(data);
    });
    socket.addEventListener("close", (event) => {
      // The token was single-use: a new connection needs a new `offhook panel`.
      const why = event.code === 4403 ? "token refused" : "disconnected";
      setConnection(`${why}: run \`offhook panel\` again`, true);
    });
  }

  setInterval(render, 250);
  connect();
})();
