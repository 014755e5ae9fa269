// The director's console: clock controls, injects, expectations, seats, live traffic.
"use strict";

async function control(action, extra = {}) {
  const r = await api(`/api/director/${TOKEN}/control`, {action, ...extra});
  if (!r.ok) alert(r.data.error ? r.data.error.message : `${action} failed`);
}

document.getElementById("resume").addEventListener("click", () => control("resume"));
document.getElementById("pause").addEventListener("click", () => control("pause"));
document.getElementById("step").addEventListener("click", () => control("step"));
document.getElementById("end").addEventListener("click", () => control("end"));
document.getElementById("reset").addEventListener("click", () => {
  if (confirm("Reset the exercise to its start? Every seat's inbox is emptied.")) control("reset");
});
document.getElementById("review").addEventListener("click", () => control("review"));
document.getElementById("speed").addEventListener("change",
  (e) => control("speed", {speed: Number(e.target.value)}));

document.getElementById("adhoc-send").addEventListener("click", async () => {
  const to = [...document.getElementById("adhoc-to").selectedOptions].map((o) => o.value);
  const subject = document.getElementById("adhoc-subject").value;
  const body = document.getElementById("adhoc-body").value;
  await control("inject", {to, subject, body});
  document.getElementById("adhoc-subject").value = "";
  document.getElementById("adhoc-body").value = "";
});

async function refresh() {
  const {data: s} = await api(`/api/director/${TOKEN}/state`);
  document.getElementById("title").textContent = s.title;
  const failure = document.getElementById("failure");
  failure.hidden = !s.failure;
  failure.textContent = s.failure || "";
  header(s);
  document.getElementById("resume").textContent = s.clock.status === "ready" ? "Start" : "Resume";
  document.getElementById("speed").value = String(s.clock.speed);
  const link = document.getElementById("review-link");
  link.hidden = !s.review;
  if (s.review) link.href = s.review;
  fill("injects", s.injects.map((i) => el("tr", {"data-inject": i.number},
    el("td", {}, i.number), el("td", {}, i.at_label), el("td", {}, i.sender),
    el("td", {}, i.to.join(", ")), el("td", {}, i.headline),
    el("td", {}, el("span", {class: `tag ${i.state}`}, i.state)),
    el("td", {}, ...(i.state === "pending" ? [
      el("button", {onclick: () => control("deliver", {inject: i.number})}, "Deliver now"), " ",
      el("button", {onclick: () => control("cancel", {inject: i.number})}, "Cancel")] : [])))));
  fill("expectations", s.expectations.map((x) => el("tr", {"data-expectation": x.id},
    el("td", {}, x.id), el("td", {}, x.seat), el("td", {title: x.description}, x.action),
    el("td", {}, x.deadline_label), el("td", {}, el("span", {class: `tag ${x.state}`}, x.state)),
    el("td", {}, x.took_label),
    el("td", {}, ...(x.state === "open" ? [
      el("button", {onclick: () => control("validate", {expectation: x.id, met: true})}, "Met"), " ",
      el("button", {onclick: () => control("validate", {expectation: x.id, met: false})}, "Missed")]
      : [])))));
  const adhoc = document.getElementById("adhoc-to");
  if (!adhoc.options.length) {
    adhoc.replaceChildren(...s.seats.map((x) => el("option", {value: x.unit}, x.unit)));
  }
  fill("seats", s.seats.map((x) => el("tr", {},
    el("td", {}, x.unit),
    el("td", {}, el("span", {class: `tag ${x.connected ? "met" : "missed"}`},
      x.connected ? "open" : "closed")),
    el("td", {}, el("a", {href: x.link}, "seat link")),
    el("td", {}, x.sent), el("td", {}, x.last_action), el("td", {}, x.open))));
  const t = s.tally;
  document.getElementById("tally").textContent =
    `messages ${t.messages} · seizure reports ${t.reports} · arrests ${t.arrests} · hits ${t.hits}`;
  fill("traffic", s.traffic.map((m) => {
    const body = el("div");
    body.innerHTML = m.html;  // rendered and escaped by the server (client/messages/render.py)
    return el("div", {class: "msg", "data-seq": m.seq},
      el("div", {class: "meta"}, `${m.at_label} · ${m.sender} · ${m.type}`),
      el("details", {}, el("summary", {}, m.headline), body));
  }));
}

live(refresh);
