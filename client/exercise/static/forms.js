// Message forms generated from the JSON Schemas. The server describes each message type
// field by field (client/exercise/forms.py: a JSON pointer, label, help and kind per field);
// this renders the description as form controls, builds the message from them, fills them
// from a message (a template, or a reply with its reference in), and shows each problem of
// a check next to the field whose pointer it names. It checks nothing itself: the server
// runs the same checks as SecureAgent.send. Needs el() from common.js.
"use strict";

let formIds = 0;  // ids that tie labels, help and problems to their controls

// "/items/-/quantity/value" for item 0 -> "/items/0/quantity/value": "-" in a field's
// pointer stands for the element of an array, replaced by the indices from the outside in.
function concretePointer(pointer, indices) {
  let i = 0;
  return pointer.split("/").map((t) => (t === "-" ? String(indices[i++]) : t)).join("/");
}

function sameValue(a, b) { return JSON.stringify(a) === JSON.stringify(b); }

function isObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

// Whether an object holds anything but empty objects (an optional group left blank does
// not go, even when a group inside it is required).
function hasContent(v) { return isObject(v) ? Object.values(v).some(hasContent) : v !== undefined; }

function shown(value) {
  if (value === true) return "yes";
  if (value === false) return "no";
  return String(value).replaceAll("_", " ");
}

// Text with `code spans` (as SchemaWalker words rules) as nodes.
function withCode(text) {
  return text.split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

class MessageForm {
  // description: one type's form (GET /api/seat/{token}/form/{type}); onchange: called
  // after every edit (the page keeps its JSON view in step).
  constructor(description, onchange = () => {}) {
    this.description = description;
    this.onchange = onchange;
    this.leftovers = [];  // [pointer, value] a filled message held that no control shows
    this.kept = el("p", {class: "kept", hidden: ""});
    this.element = el("div", {class: "message-form", "data-type": description.type});
    this.element.append(el("p", {class: "muted"}, "Fields marked ",
      el("span", {class: "req"}, "*"), " are required."), this.kept);
    if (description.rules.length) {
      this.element.append(el("details", {class: "rules"},
        el("summary", {}, "Conditions the check also applies"),
        el("ul", {}, ...description.rules.map((r) => el("li", {}, ...withCode(r))))));
    }
    this.part = this.objectPart(description.fields, description.variants, [], this.element);
  }

  // Sets every control from message (fields it does not name are emptied). What no
  // control can show is kept as it is and goes back into build().
  fill(message) {
    const body = isObject(message) ? {...message} : {};
    for (const [name, value] of Object.entries(this.description.const)) {
      if (sameValue(body[name], value)) delete body[name];  // another type stays, as written
    }
    this.leftovers = this.part.set(body, "");
    this.kept.hidden = !this.leftovers.length;
    this.kept.replaceChildren(this.leftovers.length ? "Kept as written in JSON (the form has no field for it): " : "",
      ...this.leftovers.flatMap(([p], i) => [i ? ", " : "", el("code", {}, p || "/")]));
  }

  // The message the controls hold: empty controls are left out.
  build() {
    const message = {...this.description.const, ...this.part.get()};
    for (const [pointer, value] of this.leftovers) setAt(message, pointer, value);
    return message;
  }

  // Shows each problem ({path, message}) next to the deepest field its path is in;
  // returns [{problem, control}] in the same order, control null for the whole message.
  showProblems(problems) {
    this.clearProblems();
    const places = [...this.element.querySelectorAll("[data-pointer]")];
    return problems.map((problem) => {
      const path = problem.path || "";
      let best = null;
      for (const place of places) {
        const at = place.dataset.pointer;
        if ((path === at || path.startsWith(at + "/")) && (!best || at.length > best.dataset.pointer.length)) best = place;
      }
      if (!best) return {problem, control: null};
      const rest = path.slice(best.dataset.pointer.length).slice(1);
      const note = best.problemNote;
      note.hidden = false;
      note.append(el("span", {}, rest ? `${rest}: ${problem.message}` : problem.message));
      best.classList.add("invalid");
      const control = best.control || best.querySelector("input, select, textarea");
      for (const c of best.controls || []) {
        c.setAttribute("aria-invalid", "true");
        c.setAttribute("aria-describedby", [c.getAttribute("aria-describedby"), note.id].filter(Boolean).join(" "));
      }
      for (let d = best.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
      return {problem, control};
    });
  }

  clearProblems() {
    for (const place of this.element.querySelectorAll(".invalid")) {
      place.classList.remove("invalid");
      place.problemNote.hidden = true;
      place.problemNote.replaceChildren();
      for (const c of place.controls || []) {
        c.removeAttribute("aria-invalid");
        const ids = (c.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== place.problemNote.id);
        if (ids.length) c.setAttribute("aria-describedby", ids.join(" "));
        else c.removeAttribute("aria-describedby");
      }
    }
  }

  focusFirst() {
    const first = this.element.querySelector(".field input, .field select, .field textarea");
    if (first) first.focus();
  }

  changed() { this.onchange(); }

  // --- rendering ---------------------------------------------------------------------------

  // The fields of one object (the message, a group, an element of a list) into container,
  // with the fields of the variant its key selects. Returns {get, set}: set(value, at)
  // returns the leftovers [pointer, value].
  objectPart(fields, variants, indices, container) {
    const nodes = new Map();
    for (const fd of fields) {
      const node = this.field(fd, indices);
      nodes.set(fd.name, node);
      if (node.element) container.append(node.element);
    }
    const slots = variants.filter((v) => nodes.has(v.key)).map((v) => {
      const slot = {variants: v, current: null, nodes: new Map(), box: el("div", {class: "variant"})};
      const keyNode = nodes.get(v.key);
      keyNode.element.after(slot.box);
      const requirable = new Set(v.cases.flatMap((c) => c.requires));
      slot.choose = (value) => {
        const found = v.cases.find((c) => c.values.some((x) => sameValue(x, value))) || null;
        if (found === slot.current) return;
        slot.current = found;
        slot.nodes = new Map();
        slot.box.replaceChildren();
        if (found && found.fields.length) {
          const group = el("div", {class: "case", role: "group", "aria-label": `${found.label}: its own fields`});
          for (const fd of found.fields) {
            const node = this.field(fd, indices);
            slot.nodes.set(fd.name, node);
            if (node.element) group.append(node.element);
          }
          slot.box.append(group);
        }
        for (const name of requirable) {
          const node = nodes.get(name);
          if (node) node.setRequired(node.fd.required || Boolean(found && found.requires.includes(name)));
        }
      };
      keyNode.listen((value) => slot.choose(value));
      return slot;
    });
    return {
      get: () => {
        const out = {};
        const add = (node, name) => {
          const value = node.get();
          if (value !== undefined) out[name] = value;
        };
        nodes.forEach(add);
        for (const slot of slots) slot.nodes.forEach(add);
        return out;
      },
      set: (value, at) => {
        if (!isObject(value)) {
          const left = value === undefined ? [] : [[at, value]];
          nodes.forEach((node) => node.set(undefined));
          for (const slot of slots) slot.choose(undefined);
          return left;
        }
        const left = [];
        const known = new Set(nodes.keys());
        nodes.forEach((node, name) => left.push(...node.set(value[name])));
        for (const slot of slots) {
          slot.choose(value[slot.variants.key]);
          slot.nodes.forEach((node, name) => { known.add(name); left.push(...node.set(value[name])); });
        }
        for (const [name, v] of Object.entries(value)) {
          if (!known.has(name)) left.push([`${at}/${name.replaceAll("~", "~0").replaceAll("/", "~1")}`, v]);
        }
        return left;
      },
    };
  }

  // One field: {fd, element, get(), set(value) -> leftovers, listen(fn), setRequired(b)}.
  field(fd, indices) {
    const at = concretePointer(fd.pointer, indices);
    if (fd.kind === "const") {
      return {fd, element: null, get: () => fd.value, set: () => [], listen: () => {}, setRequired: () => {}};
    }
    if (fd.kind === "group") return this.group(fd, at, indices);
    if (fd.kind === "list") return this.list(fd, at, indices);
    if (fd.kind === "choices") return this.choices(fd, at);
    return this.scalar(fd, at);
  }

  // The parts every field has: its place (data-pointer), help and problem note.
  frame(tag, fd, at, id) {
    const place = el(tag, {class: `field ${fd.kind}`, "data-pointer": at});
    place.help = fd.help ? el("p", {class: "help", id: `${id}-help`}, fd.help) : null;
    place.problemNote = el("p", {class: "field-problem", id: `${id}-problem`, hidden: ""});
    place.marker = el("span", {class: "req", "aria-hidden": "true"}, fd.required ? " *" : "");
    return place;
  }

  caption(fd, place) {
    return [fd.label, place.marker, ...(fd.nominal ? [" ", el("span", {class: "tag nominal"}, "personal data")] : [])];
  }

  scalar(fd, at) {
    const id = `f${++formIds}`;
    const place = this.frame("div", fd, at, id);
    let control;
    const attrs = {id, name: at};
    if (place.help) attrs["aria-describedby"] = place.help.id;
    if (fd.required) attrs["aria-required"] = "true";
    if (fd.kind === "enum" || fd.kind === "boolean") {
      const options = fd.kind === "boolean" ? [true, false] : fd.options;
      control = el("select", attrs, el("option", {value: ""}, fd.required ? "Choose..." : "(not given)"),
        ...options.map((o) => el("option", {value: JSON.stringify(o)}, shown(o))));
    } else if (["long_text", "strings", "json"].includes(fd.kind)) {
      control = el("textarea", {...attrs, rows: fd.kind === "json" ? 6 : 3, spellcheck: fd.kind === "long_text" ? "true" : "false"});
      if (fd.kind === "strings") {
        place.help = place.help || el("p", {class: "help", id: `${id}-help`});
        place.help.append(place.help.textContent ? " " : "", "One per line.");
        control.setAttribute("aria-describedby", place.help.id);
      }
    } else {
      control = el("input", {...attrs, type: "text", autocomplete: "off", spellcheck: "false"});
      if (fd.kind === "number") control.setAttribute("inputmode", "decimal");
      if (fd.kind === "integer") control.setAttribute("inputmode", "numeric");
      if (fd.placeholder) control.setAttribute("placeholder", fd.placeholder);
    }
    place.control = control;
    place.controls = [control];
    // the marks stay out of the label, so that its text is the field's name
    place.append(el("div", {class: "caption"}, el("label", {for: id}, fd.label), ...this.caption(fd, place).slice(1)));
    if (place.help) place.append(place.help);
    place.append(control, place.problemNote);
    const listeners = [];
    const get = () => readScalar(fd, control);
    const onEdit = () => { for (const fn of listeners) fn(get()); this.changed(); };
    control.addEventListener("input", onEdit);
    control.addEventListener("change", onEdit);
    return {
      fd, element: place, get,
      set: (value) => {
        const left = writeScalar(fd, control, value);
        for (const fn of listeners) fn(get());
        return left ? [[at, value]] : [];
      },
      listen: (fn) => listeners.push(fn),
      setRequired: (required) => {
        place.marker.textContent = required ? " *" : "";
        if (required) control.setAttribute("aria-required", "true");
        else control.removeAttribute("aria-required");
      },
    };
  }

  choices(fd, at) {
    const id = `f${++formIds}`;
    const place = this.frame("fieldset", fd, at, id);
    const box = el("div", {class: "options"});
    place.append(el("legend", {}, ...this.caption(fd, place)));
    if (place.help) place.append(place.help);
    place.append(box, place.problemNote);
    place.controls = [];
    const add = (value, note = "") => {
      const cid = `f${++formIds}`;
      const input = el("input", {type: "checkbox", id: cid, value: JSON.stringify(value)});
      if (place.help) input.setAttribute("aria-describedby", place.help.id);
      input.addEventListener("change", () => this.changed());
      place.controls.push(input);
      box.append(el("label", {for: cid}, input, " ", shown(value), note));
      return input;
    };
    for (const option of fd.options) add(option);
    const get = () => {
      const values = place.controls.filter((c) => c.checked).map((c) => JSON.parse(c.value));
      return values.length ? values : undefined;
    };
    return {
      fd, element: place, get,
      set: (value) => {
        if (value !== undefined && !Array.isArray(value)) return [[at, value]];
        const wanted = (value || []).map((v) => JSON.stringify(v));
        for (const v of wanted) {
          if (!place.controls.some((c) => c.value === v)) add(JSON.parse(v), " (not one of the options)");
        }
        for (const c of place.controls) c.checked = wanted.includes(c.value);
        return [];
      },
      listen: () => {},
      setRequired: (required) => { place.marker.textContent = required ? " *" : ""; },
    };
  }

  // An object: a fieldset when required; when optional, a disclosure that opens when it
  // holds something (a long message stays short to read).
  group(fd, at, indices) {
    const id = `f${++formIds}`;
    const optional = !fd.required;
    const place = this.frame(optional ? "details" : "fieldset", fd, at, id);
    const body = el("div", {class: "body", role: "group", "aria-labelledby": `${id}-title`});
    const optionalNote = el("span", {class: "muted"}, " (optional)");
    if (optional) place.append(el("summary", {id: `${id}-title`}, ...this.caption(fd, place), optionalNote));
    else place.append(el("legend", {id: `${id}-title`}, ...this.caption(fd, place)));
    if (place.help) place.append(place.help);
    place.append(place.problemNote, body);
    const part = this.objectPart(fd.fields, fd.variants, indices, body);
    let required = fd.required;
    return {
      fd, element: place,
      get: () => {
        const value = part.get();
        return required || hasContent(value) ? value : undefined;
      },
      set: (value) => {
        const left = part.set(value, at);
        if (optional) place.open = value !== undefined;
        return left;
      },
      listen: () => {},
      setRequired: (r) => {
        required = r;
        place.marker.textContent = r ? " *" : "";
        optionalNote.hidden = r;
        if (r && optional) place.open = true;
      },
    };
  }

  // An array of objects: one group per element, each removable, and a button to add one.
  list(fd, at, indices) {
    const id = `f${++formIds}`;
    const place = this.frame("fieldset", fd, at, id);
    const box = el("div", {class: "items"});
    const what = fd.item_label.toLowerCase();
    const adder = el("button", {type: "button", class: "add"}, `Add ${/^[aeiou]/.test(what) ? "an" : "a"} ${what}`);
    place.append(el("legend", {}, ...this.caption(fd, place)));
    if (place.help) place.append(place.help);
    place.append(place.problemNote, box, adder);
    let items = [];
    let empty = false;  // filled with [], which then goes as []
    const get = () => (items.length ? items.map((part) => part.get()) : (empty ? [] : undefined));
    const render = (values) => {
      box.replaceChildren();
      items = [];
      const left = [];
      values.forEach((value, i) => {
        const itemAt = `${at}/${i}`;
        const title = `${fd.item_label} ${i + 1}`;
        const fid = `f${++formIds}`;
        const fs = el("fieldset", {class: "item", "data-pointer": itemAt});
        fs.problemNote = el("p", {class: "field-problem", id: `${fid}-problem`, hidden: ""});
        const remove = el("button", {type: "button", class: "remove", "aria-label": `Remove ${title.toLowerCase()}`}, "Remove");
        remove.addEventListener("click", () => {
          empty = false;
          const now = get() || [];
          now.splice(i, 1);
          render(now);
          adder.focus();
          this.changed();
        });
        fs.append(el("legend", {}, title), remove, fs.problemNote);
        const part = this.objectPart(fd.fields, fd.variants, [...indices, i], fs);
        items.push(part);
        box.append(fs);
        left.push(...part.set(value, itemAt));
      });
      return left;
    };
    adder.addEventListener("click", () => {
      empty = false;
      render([...(get() || []), {}]);
      const last = box.lastElementChild;
      const first = last && last.querySelector("input, select, textarea");
      if (first) first.focus();
      this.changed();
    });
    return {
      fd, element: place, get,
      set: (value) => {
        empty = Array.isArray(value) && !value.length;
        if (value === undefined) { render([]); return []; }
        if (!Array.isArray(value)) { render([]); return [[at, value]]; }
        return render(value);
      },
      listen: () => {},
      setRequired: (r) => { place.marker.textContent = r ? " *" : ""; },
    };
  }
}

// The value a scalar control holds; undefined when it is empty. A number that does not
// parse goes as the text typed, so that the check names it next to the field.
function readScalar(fd, control) {
  const text = control.value;
  if (text.trim() === "") return undefined;
  switch (fd.kind) {
    case "enum":
    case "boolean":
      return JSON.parse(text);
    case "number":
    case "integer": {
      const n = Number(text.trim());
      return Number.isFinite(n) ? n : text;
    }
    case "strings": {
      const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
      return lines.length ? lines : undefined;
    }
    case "json":
      try { return JSON.parse(text); } catch { return text; }
    default:
      return text;
  }
}

// Shows value in a scalar control; returns true when the control cannot hold it (it is
// then kept aside as written).
function writeScalar(fd, control, value) {
  if (value === undefined) { control.value = ""; return false; }
  switch (fd.kind) {
    case "enum":
    case "boolean": {
      const key = JSON.stringify(value);
      if (![...control.options].some((o) => o.value === key)) {
        control.append(el("option", {value: key}, `${shown(value)} (not one of the options)`));
      }
      control.value = key;
      return false;
    }
    case "strings":
      if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) { control.value = ""; return true; }
      control.value = value.join("\n");
      return false;
    case "json":
      control.value = JSON.stringify(value, null, 2);
      return false;
    default: {
      // a number field also shows text, as readScalar keeps what does not parse
      const fits = typeof value === "string" ||
        (typeof value === "number" && (fd.kind === "number" || fd.kind === "integer"));
      control.value = fits ? String(value) : "";
      return !fits;
    }
  }
}

// Puts value at pointer in message, making the objects on the way.
function setAt(message, pointer, value) {
  if (!pointer) return;
  const tokens = pointer.split("/").slice(1).map((t) => t.replaceAll("~1", "/").replaceAll("~0", "~"));
  let node = message;
  for (const t of tokens.slice(0, -1)) {
    if (node[t] === null || typeof node[t] !== "object") node[t] = {};
    node = node[t];
  }
  node[tokens[tokens.length - 1]] = value;
}
