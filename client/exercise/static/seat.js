// A player's seat: the inbox it can read, and messages written in forms generated from the
// schemas (forms.js), or as JSON, and checked before sending.
"use strict";
let templates = {};
const forms = {};  // type -> its form description, fetched once
let form = null;  // the MessageForm on the page
let jsonView = false;
let jsonPreferred = false;  // the player's choice, kept across messages

function showProblems(problems) {
  const placed = form ? form.showProblems(problems) : problems.map((problem) => ({problem, control: null}));
  fill("problems", placed.map(({problem: p, control}) => {
    const where = el("code", {}, p.path || "/");
    const label = control && !jsonView
      ? el("a", {href: `#${control.id}`, onclick: (e) => { e.preventDefault(); control.focus(); }}, where)
      : where;
    return el("li", {}, label, " ", p.message);
  }));
}

// The message as written, from the form or the JSON; null (and the problem shown) when
// the JSON does not parse.
function composed() {
  if (!jsonView && form) return form.build();
  try { return JSON.parse(document.getElementById("content").value); }
  catch (e) { showProblems([{path: "", message: `not JSON: ${e.message}`}]); return null; }
}

function syncJson() {
  if (!jsonView && form) document.getElementById("content").value = JSON.stringify(form.build(), null, 2);
}

function startWriting(type, content, focus = true) {
  document.getElementById("type").value = type;
  form = forms[type] ? new MessageForm(forms[type], syncJson) : null;
  document.getElementById("form").replaceChildren(...(form ? [form.element] : []));
  if (form) form.fill(content);
  document.getElementById("content").value = JSON.stringify(content, null, 2);
  showView(jsonPreferred || !form);
  showProblems([]);
  document.getElementById("notice").textContent = "";
  if (focus) {
    if (jsonView) document.getElementById("content").focus();
    else form.focusFirst();
  }
}

function showView(json) {
  jsonView = json;
  document.getElementById("json").hidden = !json;
  document.getElementById("form").hidden = json;
  document.getElementById("json-view").setAttribute("aria-pressed", String(json));
}

// The JSON view and the form hold the same message: each is filled from the other when
// the view changes.
document.getElementById("json-view").addEventListener("click", () => {
  if (!jsonView) {
    jsonPreferred = true;
    syncJson();
    showView(true);
    document.getElementById("content").focus();
    return;
  }
  const message = composed();
  if (!message) return;
  const type = typeof message.type === "string" && forms[message.type] ? message.type
    : document.getElementById("type").value;
  jsonPreferred = false;
  showView(false);
  if (type !== document.getElementById("type").value || !form) startWriting(type, message);
  else { form.fill(message); showProblems([]); form.focusFirst(); }
});

document.getElementById("type").addEventListener("change",
  (e) => startWriting(e.target.value, templates[e.target.value]));

function countProblems(n) { return `${n} problem${n === 1 ? "" : "s"}`; }

document.getElementById("check").addEventListener("click", async () => {
  const message = composed();
  if (!message) return;
  const r = await api(`/api/seat/${TOKEN}/check`, {message});
  const problems = r.data.problems || [];
  showProblems(problems);
  const notice = document.getElementById("notice");
  notice.textContent = !r.data.problems ? "" : problems.length
    ? `${countProblems(problems.length)}: see next to the fields.` : "No problems found.";
  notice.classList.toggle("bad", problems.length > 0);
});

document.getElementById("send").addEventListener("click", async () => {
  const message = composed();
  if (!message) return;
  const r = await api(`/api/seat/${TOKEN}/send`, {message});
  if (r.data.sent) startWriting(message.type, templates[message.type], false);
  const problems = r.data.problems || [];
  showProblems(problems);
  const notice = document.getElementById("notice");
  notice.textContent = r.data.sent ? `Sent as ${r.data.id}.`
    : (r.data.error || (r.ok ? "" : `Not sent: nothing left this seat${problems.length ? ` (${countProblems(problems.length)})` : ""}.`));
  notice.classList.toggle("bad", !r.data.sent);
});

async function loadForms(types) {
  await Promise.all(types.filter((t) => !forms[t]).map(async (t) => {
    const r = await api(`/api/seat/${TOKEN}/form/${encodeURIComponent(t)}`);
    if (r.ok) forms[t] = r.data;  // without it, that type is written as JSON
  }));
}

async function refresh() {
  const {data: s} = await api(`/api/seat/${TOKEN}/state`);
  document.getElementById("title").textContent = `${s.unit} · ${s.title}`;
  header(s);
  templates = s.templates;
  const select = document.getElementById("type");
  if (!select.options.length) {
    await loadForms(s.types);  // before the inbox, so that a reply opens its form at once
    select.replaceChildren(...s.types.map((t) => el("option", {value: t}, t.replaceAll("_", " "))));
    startWriting(s.types[0], templates[s.types[0]], false);
  }
  document.getElementById("count").textContent = `(${s.inbox.length})`;
  fill("inbox", s.inbox.map((m) => {
    const body = el("div");
    body.innerHTML = m.html;  // rendered and escaped by the server
    const reply = m.reply ? [el("button", {onclick: () => startWriting(m.reply.type, m.reply.content)},
      `Answer with a ${m.reply.type.replaceAll("_", " ")}`)] : [];
    return el("div", {class: "msg", "data-id": m.id},
      el("div", {class: "meta"}, `${m.at_label} · from ${m.sender} · ${m.type}`),
      ...(m.thread && m.thread.length ? [el("div", {class: "meta thread"},
        `in reply to: ${m.thread.join(" → ")}`)] : []),
      el("details", {}, el("summary", {}, m.headline), body), ...reply);
  }));
  fill("open", s.open.map((x) => el("li", {}, `${x.description} (by ${x.deadline_label})`)));
}

live(refresh);
