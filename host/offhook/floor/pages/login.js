"use strict";
// Posts the token (never in the URL, so no log sees it); the answer sets the session cookie.
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = document.getElementById("token");
  const error = document.getElementById("error");
  error.textContent = "";
  let answer;
  try {
    answer = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: field.value.trim() }),
      credentials: "same-origin",
    });
  } catch (e) {
    error.textContent = "Central is not reachable. Try again in a moment.";
    return;
  }
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    error.textContent = answer.status === 401 ? "This token is not valid (wrong or revoked)." : body.error || `Refused (${answer.status}).`;
    return;
  }
  field.value = "";
  const next = new URLSearchParams(location.search).get("next");
  location.assign(next && /^\/[a-z]+$/.test(next) ? next : body.home);
});
