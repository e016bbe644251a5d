// offhook agent panel: renders the daemon's state pushed over the local API.
// The one-time token comes in the URL fragment (never sent to a server, never in the
// page) and is dropped from the address bar at once. Message shapes: docs/panel.md.
// When the connection to the daemon ends the page says so, shows no call or agent state
// (it would be stale), and reconnects by itself: 250 ms, doubling to at most 1 s.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const CALL_LABELS = { idle: "No call", ringing: "Ringing", dialing: "Dialing", active: "Talking", held: "On hold" };
  const REC_LABELS = { on: "recording", paused: "recording paused", failed: "recording failed", off: "not recorded" };
  const RETRY_FIRST_MS = 250;
  const RETRY_MAX_MS = 1000; // the daemon's return is seen within this (plus a connect)
  const WELCOME_TIMEOUT_MS = 5000; // a connection not welcomed by then is dropped and retried
  const LOST = "Lost the offhook daemon \u2014 reconnecting\u2026";
  const REFUSED = "The offhook daemon refused this page's token \u2014 run `offhook panel` again";
  const NO_TOKEN = "Not connected to the offhook daemon \u2014 open this page with `offhook panel`";

  // The last state from a live connection and when it arrived: timers count on locally
  // from there. null while there is no live connection: nothing stale is shown.
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

  // The banner says the page is not connected (and why); the call and agent state are
  // then unknown, not "Offline" or "No call".
  function setDown(banner) {
    const el = $("banner");
    el.textContent = banner || "";
    el.hidden = !banner;
    if (banner) {
      state = null;
      ringSeenAt = null;
      showNotice("");
      $("figures").classList.add("stale");
    }
    render();
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

  function renderUnknown() {
    $("agent-state").hidden = true;
    $("call").className = "card call-unknown";
    $("call-state").textContent = "Call state unknown";
    $("peer").textContent = "\u00a0";
    $("mute").hidden = true;
    $("main-timer-label").textContent = "Call time";
    $("main-timer").textContent = "\u2013";
    for (const id of ["hold-block", "reminder-block", "wrap-block"]) $(id).hidden = true;
  }

  function render() {
    if (!state) {
      renderUnknown();
      return;
    }
    const agent = state.agent || "offline";
    const badge = $("agent-state");
    badge.hidden = false;
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

    // The call's recording (docs/recording.md): shown while it is on, paused or failed; the
    // button asks the recorder, and the badge follows only its answer.
    const recording = call ? state.recording || "off" : "off";
    const rec = $("recording");
    rec.hidden = recording === "off";
    rec.className = `rec rec-${recording}`;
    rec.textContent = REC_LABELS[recording] || recording;
    const recToggle = $("rec-toggle");
    recToggle.hidden = !(recording === "on" || recording === "paused");
    recToggle.textContent = recording === "paused" ? "Resume recording" : "Pause recording";

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
    $("figures").classList.remove("stale");
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

  // After each call: its conversation figures (the audio pipeline's; null where not measured).
  function applyCallFigures(f) {
    if (!f || typeof f !== "object") return;
    const seconds = (v) => (typeof v === "number" ? `${v.toFixed(1)} s` : "\u2013");
    const share = f.agent_share;
    $("lc-share").textContent = typeof share === "number" ? `${Math.round(share * 100)} %` : "\u2013";
    $("lc-overtalk").textContent =
      typeof f.overtalk_count === "number" ? `${f.overtalk_count} × (${seconds(f.overtalk_s)})` : "\u2013";
    $("lc-dead-air").textContent =
      typeof f.dead_air_count === "number" ? `${f.dead_air_count} × (${seconds(f.dead_air_s)})` : "\u2013";
    $("lc-response").textContent = seconds(f.response_median_s);
    $("lc-monologue").textContent = seconds(f.agent_longest_monologue_s);
    $("lc-checkins").textContent = typeof f.missed_checkins === "number" ? String(f.missed_checkins) : "\u2013";
    $("last-call").hidden = false;
  }

  function clearFigures() {
    $("figures").classList.remove("stale");
    $("figures-date").textContent = "";
    for (const id of ["calls", "handled", "missed", "aht", "talk", "hold", "wrap", "long-holds"]) {
      $(`fig-${id}`).textContent = "\u2013";
    }
  }

  function onMessage(data) {
    if (data.type === "welcome") {
      clearTimeout(welcomeTimer);
      retryDelay = RETRY_FIRST_MS;
      // A daemon that can welcome this page back after a drop or its own restart gives it
      // a resume token; the one-time token from the URL is spent.
      if (typeof data.resume_token === "string" && data.resume_token) credential = data.resume_token;
      setConnection("connected");
      setDown(null);
      send({ type: "subscribe" });
      figuresRequest = send({ type: "figures" });
      return;
    }
    if (data.type === "event") {
      if (data.event === "state") applyState(data);
      else if (data.event === "figures") applyFigures(data.figures || data);
      else if (data.event === "analytics") applyCallFigures(data.figures);
      else if (data.event === "hold_reminder") showNotice("Check in with the customer on hold.");
      else if (data.event === "missed_call") showNotice("Missed call: you were set to break.");
      else if (data.event === "recording_failed") showNotice(`Recording stopped: ${data.reason || "an error"}.`);
      else if (data.event === "established" || data.event === "closed") showNotice("");
      return;
    }
    if (data.ok === true && data.state) applyState(data.state);
    if (data.ok === true && data.figures) applyFigures(data.figures);
    if (data.ok === false && figuresRequest !== null && data.id === figuresRequest) clearFigures(); // no figures here
  }

  // The connection: one socket at a time, retried with backoff while the daemon is away.
  let socket = null;
  let credential = null; // the URL's one-time token, then the daemon's resume token if it gives one
  let retryDelay = RETRY_FIRST_MS;
  let retryTimer = null;
  let welcomeTimer = null;
  let figuresRequest = null;

  function send(body) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return null;
    const id = nextId++;
    socket.send(JSON.stringify({ id, ...body }));
    return id;
  }

  function connect() {
    retryTimer = null;
    const ws = new WebSocket(`ws://${window.location.host}/api`);
    socket = ws;
    welcomeTimer = setTimeout(() => ws.close(), WELCOME_TIMEOUT_MS);
    ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "auth", token: credential })));
    ws.addEventListener("message", (message) => {
      if (ws !== socket) return;
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return; // not JSON: not for us
      }
      onMessage(data);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== socket) return;
      socket = null;
      clearTimeout(welcomeTimer);
      if (event.code === 4403) {
        // The daemon does not know this page's token (spent, expired, or a restarted daemon).
        setConnection("token refused: run `offhook panel` again", true);
        setDown(REFUSED);
        return;
      }
      setConnection("reconnecting\u2026", true);
      setDown(LOST);
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
    });
  }

  // Background tabs get their timers slowed down: when the agent looks at the page (or
  // the network comes back), try at once instead of waiting for the next retry.
  function retryNow() {
    if (retryTimer === null || document.hidden) return;
    clearTimeout(retryTimer);
    connect();
  }
  document.addEventListener("visibilitychange", retryNow);
  window.addEventListener("online", retryNow);

  function start() {
    credential = fragmentToken();
    if (!window.location.host) {
      setConnection("open this page with `offhook panel`", true);
      setDown(NO_TOKEN);
      return;
    }
    if (!credential) {
      setConnection("no token: open this page with `offhook panel`", true);
      setDown(NO_TOKEN);
      return;
    }
    connect();
  }

  $("rec-toggle").addEventListener("click", () => send({ type: "command", action: "toggle_recording_pause" }));
  setInterval(render, 250);
  start();
})();
