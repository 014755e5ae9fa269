// The lesson page (opshub teach): the instructor's controls, a sequence diagram of the
// messages so far, and the shown item three ways: as written, as the hub stores it, as
// each member reads it. Everything comes from /api/lesson/<token>/state; this decides
// nothing. Only the server's rendered message (written.html) is inserted as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const ROW = 50;     // diagram row height
const LABEL = 160;  // diagram time column width
const HEADER_FIELDS = [["version", 1], ["content type", 1], ["epoch", 4], ["sender leaf", 2],
                       ["generation", 4], ["reuse guard", 4]];
let state = null;
let shownCursor = null;                 // the cursor the diagram last scrolled to
const memo = {};                        // panel -> what it was last drawn from
const opened = {story: false, type: false};  // details the instructor opened or closed

// --- talking to the lesson --------------------------------------------------------------

async function control(action, extra = {}) {
  const r = await api(`/api/lesson/${TOKEN}/control`, {action, ...extra}).catch((exc) =>
    ({ok: false, data: {error: {message: `${action}: the lesson did not answer (${exc.message})`}}}));
  if (r.ok) $("notice").hidden = true;
  else notify(r.data.error ? r.data.error.message : `${action} failed (HTTP ${r.status})`);
}

function notify(text) {
  $("notice-text").textContent = text;
  $("notice").hidden = false;
}

async function load() {
  const r = await api(`/api/lesson/${TOKEN}/state`);
  if (!r.ok) throw new Error(r.data.error ? r.data.error.message : `HTTP ${r.status}`);
  state = r.data;
  for (const draw of [drawHeader, drawControls, drawDiagram, drawCountries, drawWritten,
                      drawStored, drawReaders, drawParticipants]) draw();
}

// true when a panel's inputs differ from the last time it was drawn
function changed(name, ...inputs) {
  const key = JSON.stringify(inputs);
  if (memo[name] === key) return false;
  memo[name] = key;
  return true;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const byUnit = () => Object.fromEntries(state.participants.map((p) => [p.unit, p]));
const memberAt = (p, epoch) => p.role === "ocu" ||
  p.spans.some(([joined, removed]) => joined <= epoch && (removed === null || epoch < removed));
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const waiting = () => el("p", {class: "muted"}, "Opening the channel…");

// --- header and controls ----------------------------------------------------------------

function drawHeader() {
  const s = state, item = s.items[s.cursor];
  $("title").textContent = `${s.scenario.name} (${s.scenario.code})`;
  document.title = `${s.scenario.code}: lesson`;
  document.documentElement.lang = s.language || "en";
  $("position").textContent = `Item ${s.cursor + 1} of ${s.total}`;
  $("position").title = `${s.done} of ${s.total} carried out over the hub`;
  const shownEpoch = s.current ? s.current.epoch : s.epoch;
  $("epoch").textContent = shownEpoch === null ? "no epoch yet" : `epoch ${shownEpoch}`;
  $("epoch").title = s.epoch === shownEpoch ? "the channel's epoch"
    : `the epoch of this item (the channel is at epoch ${s.epoch} now)`;
  $("when").textContent = item ? item.label : "--";
  const mode = s.moving ? "working" : s.playing ? "playing" : "paused";
  $("state").textContent = mode === "working" ? "working…" : mode;
  $("state").className = `state ${mode}`;
  $("failure").hidden = !s.failure;
  $("failure").textContent = s.failure ? `The lesson cannot go on: ${s.failure}` : "";
}

function drawControls() {
  const s = state;
  $("back").disabled = s.moving || s.cursor <= 0;
  $("forward").disabled = s.moving || s.cursor >= s.total - 1;
  $("play").textContent = s.playing ? "Pause" : "Play";
  $("play").setAttribute("aria-pressed", String(s.playing));
  $("play").disabled = !s.playing && s.cursor >= s.total - 1;
  const pace = $("pace"), value = String(s.pace);
  if (![...pace.options].some((o) => o.value === value)) pace.append(el("option", {value}, `${value} s`));
  pace.value = value;
  $("follow").value = s.follow ?? "";
  if (changed("jumps", s.storylines, s.days)) {
    fill("follow", [el("option", {value: ""}, "every storyline"),
      ...s.storylines.map((st) => el("option", {value: st.id}, st.title))]);
    $("follow").value = s.follow ?? "";
    fill("storyline-jump", [el("option", {value: ""}, "Jump to a storyline…"),
      ...s.storylines.map((st) => el("option", {value: st.first ?? "",
        ...(st.first === null ? {disabled: ""} : {})}, st.title))]);
    fill("day-jump", [el("option", {value: ""}, "Jump to a day…"),
      ...s.days.map((d) => el("option", {value: d.first}, d.label))]);
  }
}

// --- the sequence diagram ---------------------------------------------------------------

// Lanes: the OCU, then liaison desks, then units, each in order of first appearance.
function lanesOf(shown, who) {
  const first = new Map();
  for (const it of shown) {
    for (const u of [it.sender, ...it.to]) if (!first.has(u)) first.set(u, first.size);
  }
  const rank = (u) => ({ocu: 0, liaison: 1})[who[u].role] ?? 2;
  return [...first.keys()].sort((a, b) => rank(a) - rank(b) || first.get(a) - first.get(b));
}

// The channel's epoch at each row (each item carried out says the epoch after it).
function rowEpochs(shown) {
  let epoch = 0;
  return shown.map((it) => (epoch = it.epoch ?? epoch));
}

function drawDiagram() {
  const s = state, box = $("diagram-box"), shown = s.items.slice(0, s.cursor + 1);
  if (!changed("diagram", shown, s.participants, box.clientWidth)) return;
  const who = byUnit(), lanes = lanesOf(shown, who), epochs = rowEpochs(shown);
  const laneW = Math.max(70, Math.min(170, (box.clientWidth - LABEL - 40) / Math.max(lanes.length, 1)));
  const stagger = laneW < 132;
  const head = stagger ? 80 : 52;
  const width = Math.max(box.clientWidth - 2, LABEL + laneW * lanes.length + 40);
  const x = (u) => LABEL + laneW * (lanes.indexOf(u) + 0.5);
  const ctx = {lanes, x, width, who, cursor: s.cursor};
  const rows = shown.map((it, i) => diagramRow(it, head + i * ROW, epochs[i], ctx));
  const heads = laneHeads(lanes, x, head, stagger, epochs.at(-1) ?? 0, ctx);
  const d = $("diagram");
  d.classList.toggle("tight", laneW < 84);
  d.setAttribute("width", width);
  d.setAttribute("height", head + ROW * shown.length + 8);
  d.replaceChildren(...rows, heads);
  for (const t of d.querySelectorAll("text.what")) {  // keep each arrow's words inside
    const x0 = Number(t.getAttribute("x")), room = width - 8 - t.getComputedTextLength();
    if (x0 > room) t.setAttribute("x", Math.max(LABEL + 4, room));
  }
  if (shownCursor !== s.cursor) {
    shownCursor = s.cursor;
    box.scrollTop = head + s.cursor * ROW + ROW / 2 - (box.clientHeight + head) / 2;
  }
  stickHeads();
}

function stickHeads() {
  const heads = $("diagram").querySelector(".heads");
  if (heads) heads.setAttribute("transform", `translate(0 ${$("diagram-box").scrollTop})`);
}

function laneHeads(lanes, x, head, stagger, epoch, {width, who}) {
  const g = svg("g", {class: "heads"}, svg("rect", {class: "head-bg", x: 0, y: 0, width, height: head}),
    svg("line", {class: "head-rule", x1: 0, x2: width, y1: head, y2: head}),
    svg("text", {class: "axis", x: 8, y: head - 10}, "#   time (UTC)"));
  lanes.forEach((u, i) => {
    const p = who[u], dy = stagger && i % 2 ? 28 : 0, member = memberAt(p, epoch);
    g.append(svg("g", {class: member ? "lane-head" : "lane-head gone", "data-unit": u},
      svg("title", {}, p.name),
      svg("text", {class: "unit", x: x(u), y: 20 + dy, "text-anchor": "middle"}, u),
      svg("text", {class: "country", x: x(u), y: 37 + dy, "text-anchor": "middle"},
        member ? p.country : `${p.country} · removed`),
      svg("line", {class: member ? "lane" : "lane gone", x1: x(u), x2: x(u), y1: 44 + dy, y2: head})));
  });
  return g;
}

function diagramRow(it, top, epoch, ctx) {
  const {lanes, x, width, who, cursor} = ctx;
  const cut = it.label.lastIndexOf(" ", it.label.lastIndexOf(" ") - 1);
  const parts = [svg("rect", {class: "bg", x: 0, y: top, width, height: ROW}),
    svg("rect", {class: "stripe", x: 0, y: top, width: 5, height: ROW}),
    ...lanes.map((u) => svg("line", {class: memberAt(who[u], epoch) ? "lane" : "lane gone",
      x1: x(u), x2: x(u), y1: top, y2: top + ROW})),
    svg("text", {class: "num", x: 12, y: top + 31}, it.index + 1),
    svg("text", {class: "when", x: 42, y: top + 21}, it.label.slice(0, cut + 1)),
    svg("text", {class: "when time", x: 42, y: top + 39}, it.label.slice(cut + 1)),
    ...(it.kind === "membership" ? band(it, top, ctx) : arrow(it, top, ctx))];
  return svg("g", {class: it.index === cursor ? "row current" : "row", "data-index": it.index},
    svg("title", {}, `${it.label} · ${it.type_words} ${it.id}: ${it.summary}`), ...parts);
}

function band(it, top, {width}) {
  return [svg("rect", {class: `band ${it.action}`, x: LABEL, y: top + 9, width: width - LABEL - 8,
                       height: ROW - 18, rx: 6}),
    svg("text", {class: "band-text", x: LABEL + (width - LABEL) / 2, y: top + ROW / 2 + 5,
                 "text-anchor": "middle"}, `${it.id} · ${it.summary}`)];
}

function arrow(it, top, {lanes, x}) {
  const y = top + 35, from = x(it.sender);
  const to = (it.everyone ? lanes : it.to).filter((u) => u !== it.sender && lanes.includes(u)).map(x);
  const lo = Math.min(from, ...to), hi = Math.max(from, ...to);
  const out = [svg("line", {class: "msg", x1: lo, x2: hi, y1: y, y2: y}),
    svg("circle", {class: "from", cx: from, cy: y, r: 5})];
  for (const tx of to) {
    const d = tx > from ? -12 : 12;
    out.push(svg("path", {class: "tip", d: `M${tx},${y} l${d},-6 v12 z`}));
  }
  out.push(svg("text", {class: "what", x: lo, y: top + 24},
    it.type_words, svg("tspan", {class: "id"}, it.everyone ? " · to every member" : ` · ${it.id}`)));
  return out;
}

// --- countries --------------------------------------------------------------------------

function drawCountries() {
  const s = state, involved = new Set();
  for (const it of s.items.slice(0, s.cursor + 1)) {
    if (it.kind === "message") [it.sender, ...it.to].forEach((u) => involved.add(u));
  }
  const list = s.countries.filter((c) => c.messages > 0);
  if (!changed("countries", list, [...involved])) return;
  fill("countries", list.length ? list.map((c) => el("li", {"data-code": c.code},
    el("span", {class: "code"}, c.code),
    el("span", {class: "count"}, plural(c.messages, "message")),
    el("span", {class: "units"}, ...c.units.map((u) =>
      el("span", {class: involved.has(u) ? "u in" : "u"}, u)))))
    : [el("li", {class: "muted"}, "None yet: the first message brings them in.")]);
}

// --- pane 1: as written -----------------------------------------------------------------

function drawWritten() {
  const c = state.current;
  if (!changed("written", c && c.index, c && c.written)) return;
  $("written").dataset.id = c ? (c.written.id ?? state.items[c.index].id) : "";
  if (!c) { fill("written-body", [waiting()]); return; }
  const w = c.written, story = w.storyline && state.storylines.find((st) => st.id === w.storyline.id);
  const message = el("div", {class: "message"});
  message.innerHTML = w.html;  // rendered and escaped by the server (client/messages/render.py)
  fill("written-body", [
    ...(story ? [remembered("story", {class: "story", id: "storyline"},
      el("summary", {}, el("span", {class: "label"}, "Storyline"), " ", story.title),
      el("p", {}, story.summary))] : []),
    el("h3", {class: "headline"}, w.headline),
    el("p", {class: "step", id: "step"}, w.explain.step),
    ...(w.html ? [message] : []),
    ...refers(w.refers),
    ...aboutType(w.explain.type),
  ]);
  $("written").scrollTop = 0;
}

// a <details> that stays as the instructor left it from one item to the next
function remembered(name, attrs, ...children) {
  return el("details", {...attrs, ...(opened[name] ? {open: ""} : {}),
    ontoggle: (e) => { opened[name] = e.target.open; }}, ...children);
}

function refers(refs) {
  if (!refs.length) return [];
  return [el("h4", {}, "Refers to"), el("ul", {class: "refers"}, ...refs.map((r) => el("li", {},
    r.index === null ? r.headline : el("a", {href: "#", "data-index": r.index,
      onclick: (e) => { e.preventDefault(); control("jump", {index: r.index}); }}, r.headline))))];
}

function aboutType(t) {
  if (!t || !t.title) return [];
  return [remembered("type", {class: "about", id: "type-explain"},
    el("summary", {}, `About this type: ${t.title}`),
    el("p", {}, el("strong", {}, "What it is for. "), t.purpose),
    el("p", {}, el("strong", {}, "Who acts. "), t.who_acts),
    el("p", {}, el("strong", {}, "What to check:")),
    el("ul", {}, ...(t.checks || []).map((q) => el("li", {}, q))))];
}

// --- pane 2: as the hub stores it -------------------------------------------------------

function drawStored() {
  const c = state.current;
  if (!changed("stored", c && c.index, c && c.stored, c && c.epoch)) return;
  if (!c) { fill("stored-body", [waiting()]); return; }
  const e = c.stored.entry;
  fill("stored-body", [
    ...(e ? [entryList(e, c), headerBytes(e), excerpt(e), ...sizes(c.written.size, e)]
      : [el("p", {class: "muted"}, "The hub's database holds no entry for this item.")]),
    ...(c.stored.entries > 1 ? [el("p", {class: "muted"},
      `The hub stored ${c.stored.entries} entries for this step; this is its own.`)] : []),
    learnList("The hub can learn", "can-learn", c.stored.can_learn),
    learnList("The hub cannot learn", "cannot-learn", c.stored.cannot_learn),
  ]);
}

function entryList(e, c) {
  const h = e.header;
  const rows = [["seq", "log position", e.seq], ["sender", "sender", e.sender],
    ["kind", "kind", e.kind], ["at", "stored at", e.at],
    ["epoch", "epoch", h ? h.epoch : c.epoch], ["generation", "generation", h ? h.generation : "—"],
    ["sender_leaf", "sender leaf", h ? h.sender_leaf : "—"],
    ["payload_size", "payload", e.payload_size, " bytes"]];
  return el("dl", {class: "entry"}, ...rows.flatMap(([key, label, value, unit]) =>
    [el("dt", {}, label), el("dd", {}, el("span", {"data-field": key}, value), unit || "")]));
}

function headerBytes(e) {
  const h = e.header, bytes = e.header_hex ? e.header_hex.split(" ") : [];
  const title = el("h4", {}, `Header: ${plural(e.header_size, "byte")}, readable by the hub`);
  if (!h || bytes.length !== 16) {
    return el("div", {class: "hex-block"}, title, el("p", {class: "hex"},
      el("code", {"data-field": "header_hex"}, e.header_hex),
      e.header_hex ? "" : "none: a membership commit is signed, not encrypted"));
  }
  let at = 0;
  const groups = HEADER_FIELDS.map(([, n]) => bytes.slice(at, at += n).join(" "));
  const values = [h.version, h.content_type, h.epoch, h.sender_leaf, h.generation, h.reuse_guard];
  const code = el("code", {"data-field": "header_hex"});
  groups.forEach((g, i) => code.append(...(i ? [" "] : []), el("span", {}, g)));
  return el("div", {class: "hex-block"}, title, el("div", {class: "bytes"}, code,
    ...HEADER_FIELDS.map(([name]) => el("span", {class: "name"}, name)),
    ...values.map((v) => el("span", {class: "value"}, v))));
}

function excerpt(e) {
  const bytes = e.excerpt_hex ? e.excerpt_hex.split(" ") : [];
  const text = bytes.map((b) => {
    const c = parseInt(b, 16);
    return c >= 32 && c < 127 ? String.fromCharCode(c) : "·";
  }).join("");
  return el("div", {class: "hex-block"},
    el("h4", {}, `${e.kind === "commit" ? "Commit" : "Ciphertext"}: first ${bytes.length} of ${e.payload_size} bytes`),
    el("p", {class: "hex"}, el("code", {"data-field": "excerpt_hex"}, e.excerpt_hex), " …"),
    el("p", {class: "ascii"}, "as text: ", el("code", {}, text, " …")));
}

function sizes(written, e) {
  if (written === undefined) return [];
  return [el("p", {class: "sizes", id: "sizes"}, `written: ${written} bytes as JSON → stored: `,
    `${e.payload_size} bytes of ciphertext (padded)`)];
}

function learnList(title, id, lines) {
  return el("div", {class: `learn ${id}`}, el("h4", {}, title),
    el("ul", {id}, ...lines.map((t) => el("li", {}, t))));
}

// --- pane 3: as members read it ---------------------------------------------------------

function drawReaders() {
  const c = state.current;
  if (!changed("readers", c && c.index, c && c.readers)) return;
  if (!c) { fill("readers-body", [waiting()]); return; }
  const keys = c.written.kind === "membership", item = state.items[c.index];
  const can = c.readers.filter((r) => r.can), cannot = c.readers.filter((r) => !r.can);
  const addressed = new Set(item.everyone ? [] : item.to);
  const same = can.filter((r) => r.same === true).length, differ = can.filter((r) => r.same === false);
  fill("readers-body", [
    el("p", {class: "summary", id: "readers-summary"}, keys
      ? `${can.length} of ${c.readers.length} hold the keys of epoch ${c.epoch}`
      : `${can.length} of ${c.readers.length} can read it`),
    ...(cannot.length ? [el("h4", {}, keys ? "Without the new keys" : "Cannot read it"),
      el("ul", {class: "cannot", id: "cannot-read"}, ...cannot.map((r) => cannotItem(r, keys)))] : []),
    el("h4", {}, keys ? "Hold the new keys" : "Can read it"),
    ...(keys ? [] : [el("p", {class: "note"}, item.everyone ? "Sent to every member. "
      : `Addressed to ${item.to.join(", ")} (outlined), yet every member holding the keys of ` +
        `epoch ${c.epoch} can decrypt it. `,
    same ? `✓ ${same} decrypted text identical to what was written.` : "",
    ...differ.map((r) => el("strong", {class: "bad"}, ` ⚠ ${r.unit} decrypted something else.`)))]),
    el("ul", {class: "chips", id: "can-read"}, ...can.map((r) => canItem(r, addressed))),
  ]);
}

function cannotItem(r, keys) {
  const fault = r.reason === "no_record" || r.tried === "decrypted";
  return el("li", {"data-unit": r.unit, "data-reason": r.reason, class: fault ? "fault" : ""},
    el("div", {class: "who"}, el("span", {class: "mark", "aria-hidden": "true"}, "✗"), " ",
      el("strong", {}, r.unit), " ", el("span", {class: "verdict"}, keys ? "no keys" : "cannot read")),
    el("p", {}, r.text),
    ...(r.tried ? [el("p", {class: "tried"}, "What its keys did with the stored bytes: ",
      el("code", {}, r.tried))] : []));
}

function canItem(r, addressed) {
  const note = r.same === true ? " Decrypted text identical to what was written."
    : r.same === false ? " Decrypted text differs from what was written!" : "";
  const tag = r.reason === "sender" ? "sender" : addressed.has(r.unit) ? "addressed" : "";
  return el("li", {"data-unit": r.unit, "data-reason": r.reason, title: r.text + note,
                   class: ["chip", tag, r.same === false ? "fault" : ""].join(" ").trim()},
    el("span", {class: "mark", "aria-hidden": "true"}, r.same === false ? "⚠" : "✓"), " ", r.unit,
    ...(tag ? [" ", el("span", {class: "tag"}, tag)] : []));
}

// --- members ----------------------------------------------------------------------------

function drawParticipants() {
  const s = state;
  if (!changed("participants", s.participants, s.moving, s.failure)) return;
  const members = s.participants.filter((p) => p.member).length;
  $("h-participants").textContent = `Members: ${members} of ${s.participants.length} participants`;
  fill("participants", s.participants.map((p) => participant(p, s.moving || !!s.failure)));
}

function participant(p, busy) {
  const history = p.spans.length ? p.spans.map(([joined, removed]) => `joined at epoch ${joined}` +
    (removed === null ? "" : `, removed at epoch ${removed}`)).join("; ") : "never joined";
  const button = p.role === "ocu" ? el("span", {class: "muted"}, "runs the channel")
    : el("button", {"data-action": p.member ? "remove" : "add", "data-unit": p.unit,
                    ...(busy ? {disabled: ""} : {})}, p.member ? "Remove" : "Add");
  return el("li", {"data-unit": p.unit, class: p.member ? "member" : "gone", title: p.name},
    el("div", {class: "top"}, el("strong", {}, p.unit), button),
    el("div", {class: "name"}, p.name),
    el("div", {class: "meta"}, `${p.country} · ${p.role} · ${p.agency.replaceAll("_", " ")}`),
    el("div", {class: "spans"}, el("span", {class: "mark"}, p.member ? "✓ member" : "✗ not a member"),
      ` · ${history}`));
}

// --- wiring -----------------------------------------------------------------------------

function jumpSelect(id) {
  $(id).addEventListener("change", (e) => {
    const value = e.target.value;
    e.target.value = "";
    if (value !== "") control("jump", {index: Number(value)});
  });
}

$("back").addEventListener("click", () => control("back"));
$("forward").addEventListener("click", () => control("forward"));
$("play").addEventListener("click", () => control(state && state.playing ? "pause" : "play"));
$("pace").addEventListener("change", (e) => control("pace", {seconds: Number(e.target.value)}));
jumpSelect("storyline-jump");
$("follow").addEventListener("change", (e) => control("follow", {storyline: e.target.value || null}));
jumpSelect("day-jump");
$("notice-close").addEventListener("click", () => { $("notice").hidden = true; });
$("diagram").addEventListener("click", (e) => {
  const row = e.target.closest("g.row");
  if (row) control("jump", {index: Number(row.dataset.index)});
});
$("diagram-box").addEventListener("scroll", stickHeads);
$("participants").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-action]");
  if (b) control(b.dataset.action, {unit: b.dataset.unit});
});
window.addEventListener("resize", () => { if (state) drawDiagram(); });
document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (e.altKey || e.ctrlKey || e.metaKey || t.isContentEditable ||
      ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName)) return;
  if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
    e.preventDefault();
    const b = $(e.key === "ArrowRight" ? "forward" : "back");
    if (!b.disabled) b.click();
  } else if (e.key === " " && !["BUTTON", "SUMMARY", "A"].includes(t.tagName)) {
    e.preventDefault();
    if (!$("play").disabled) $("play").click();
  }
});

live(async () => {
  try { await load(); } catch (exc) { notify(`could not show the lesson: ${exc.message}`); }
});
