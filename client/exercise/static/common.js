// Shared by the console and the seats: the page's token, JSON calls, live updates.
"use strict";
const TOKEN = location.pathname.split("/").pop();

async function api(path, body) {
  const init = body === undefined ? {} :
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  return {ok: response.ok, status: response.status, data};
}

// Calls refresh() now and whenever the exercise changes (server-sent events); a dropped
// stream reconnects by itself and the page fetches everything again, so nothing is lost.
// Never two fetches at once; a change that comes during one is fetched after it (else the
// page could stay on what it showed before the last change).
function live(refresh) {
  let running = false, again = false;
  const run = async () => {
    if (running) { again = true; return; }
    running = true;
    try {
      do { again = false; await refresh(); } while (again);
    } finally { running = false; }
  };
  const source = new EventSource(`/api/events/${TOKEN}`);
  source.addEventListener("change", run);
  run();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fill(id, rows) { const t = document.getElementById(id); t.replaceChildren(...rows); }

function header(state) {
  document.getElementById("clock").textContent = state.clock.label;
  const s = document.getElementById("state");
  s.textContent = state.clock.status;
  s.className = "state " + state.clock.status;
}
