// A player's seat: the inbox it can read, and messages written and checked before sending.
"use strict";
let templates = {};

function showProblems(problems) {
  fill("problems", problems.map((p) => el("li", {}, el("code", {}, p.path || "/"), " ", p.message)));
}

function composed() {
  try { return JSON.parse(document.getElementById("content").value); }
  catch (e) { showProblems([{path: "", message: `not JSON: ${e.message}`}]); return null; }
}

function startWriting(type, content) {
  document.getElementById("type").value = type;
  document.getElementById("content").value = JSON.stringify(content, null, 2);
  showProblems([]);
  document.getElementById("notice").textContent = "";
  document.getElementById("content").focus();
}

document.getElementById("type").addEventListener("change",
  (e) => startWriting(e.target.value, templates[e.target.value]));

document.getElementById("check").addEventListener("click", async () => {
  const message = composed();
  if (!message) return;
  const r = await api(`/api/seat/${TOKEN}/check`, {message});
  showProblems(r.data.problems || []);
  document.getElementById("notice").textContent = r.data.problems && !r.data.problems.length
    ? "No problems found." : "";
});

document.getElementById("send").addEventListener("click", async () => {
  const message = composed();
  if (!message) return;
  const r = await api(`/api/seat/${TOKEN}/send`, {message});
  if (r.data.sent) startWriting(message.type, templates[message.type]);
  showProblems(r.data.problems || []);
  const notice = document.getElementById("notice");
  notice.textContent = r.data.sent
    ? `Sent as ${r.data.id}.` : (r.data.error || (r.ok ? "" : "Not sent: nothing left this seat."));
  notice.classList.toggle("bad", !r.data.sent);
});

async function refresh() {
  const {data: s} = await api(`/api/seat/${TOKEN}/state`);
  document.getElementById("title").textContent = `${s.unit} · ${s.title}`;
  header(s);
  templates = s.templates;
  const select = document.getElementById("type");
  if (!select.options.length) {
    select.replaceChildren(...s.types.map((t) => el("option", {value: t}, t.replaceAll("_", " "))));
    startWriting(s.types[0], templates[s.types[0]]);
  }
  document.getElementById("count").textContent = `(${s.inbox.length})`;
  fill("inbox", s.inbox.map((m) => {
    const body = el("div");
    body.innerHTML = m.html;  // rendered and escaped by the server
    const reply = m.reply ? [el("button", {onclick: () => startWriting(m.reply.type, m.reply.content)},
      `Answer with a ${m.reply.type.replaceAll("_", " ")}`)] : [];
    return el("div", {class: "msg", "data-id": m.id},
      el("div", {class: "meta"}, `${m.at_label} · from ${m.sender} · ${m.type}`),
      el("details", {}, el("summary", {}, m.headline), body), ...reply);
  }));
  fill("open", s.open.map((x) => el("li", {}, `${x.description} (by ${x.deadline_label})`)));
}

live(refresh);
