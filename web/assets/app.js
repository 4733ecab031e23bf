// dagctl UI: the run page follows its run through server-sent events (no polling), and the log viewer follows
// a running try through the REST API (session cookie; GETs need no CSRF).
"use strict";
(function () {
  const live = document.getElementById("run-live");
  if (!live || live.dataset.live !== "true" || !window.EventSource) return;
  const events = new EventSource(live.dataset.events, { withCredentials: true });
  let pending = null;
  // Re-reads this page and swaps in the run's facts, task table and state badge.
  async function refresh() {
    pending = null;
    try {
      const res = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      for (const id of ["run-live", "run-state"]) {
        const fresh = doc.getElementById(id);
        const current = document.getElementById(id);
        if (fresh && current) current.replaceWith(fresh);
      }
    } catch (e) {
      // The next change refreshes again.
    }
  }
  // Changes made between this page's rendering and the stream's (re)opening are read once at the opening.
  events.addEventListener("open", () => {
    if (!pending) pending = setTimeout(refresh, 0);
  });
  events.addEventListener("change", (e) => {
    if (!pending) pending = setTimeout(refresh, 100);
    if (String(e.data).startsWith("ended:")) events.close();
  });
})();
(function () {
  const viewer = document.getElementById("log-viewer");
  if (!viewer || viewer.dataset.live !== "true") return;
  const lines = document.getElementById("log-lines");
  const status = document.getElementById("follow-status");
  const badge = document.getElementById("ti-state");
  let token = viewer.dataset.token;
  let polls = 0;
  const maxPolls = 3600; // one hour at one poll per second
  const level = (l) => (l.level || "info").toLowerCase();
  const text = (l) => `[${l.timestamp || ""}] {${l.logger || ""}} ${level(l).toUpperCase()} - ${l.event}`;
  async function poll() {
    polls += 1;
    try {
      const res = await fetch(`${viewer.dataset.api}${viewer.dataset.api.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (res.ok) {
        const body = await res.json();
        for (const l of body.content) {
          const span = document.createElement("span");
          span.className = `lvl-${level(l)}`;
          span.textContent = text(l) + "\n";
          lines.appendChild(span);
        }
        if (body.content.length) lines.scrollTop = lines.scrollHeight;
        token = body.continuation_token || token;
      }
      const ti = await fetch(viewer.dataset.tiApi, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (ti.ok) {
        const t = await ti.json();
        const state = t.state || "none";
        badge.textContent = state;
        badge.className = `badge s-${state}`;
        const live = ["queued", "scheduled", "running", "restarting", "up_for_retry", "none"].includes(state) && Number(t.try_number) <= Number(viewer.dataset.try);
        if (!live) {
          status.textContent = `finished: ${state}`;
          return;
        }
      }
    } catch (e) {
      status.textContent = `connection problem, retrying (${e})`;
    }
    if (polls < maxPolls) setTimeout(poll, 1000);
    else status.textContent = "stopped following after an hour; reload to continue";
  }
  setTimeout(poll, 500);
})();
