"use strict";
// Shared by the floor's pages: durations, and logging out.
function clock(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}
function toLogin(page) {
  location.assign(`/login?next=/${page}`);
}
document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("logout");
  if (button) button.addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin" }).catch(() => {});
    location.assign("/login");
  });
});
