// The explorer's schema tree and the query built from it (an ES module; see explorer.js).
// Every node carries the policy's decision for its coordinate; ticked leaves become the selection,
// arguments of the fields on the way become variables. All DOM text is set with textContent.

const byId = (id) => document.getElementById(id);
let changed = () => {}; // set by renderTree: rebuild the query after a tick or an argument

export function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

export function option(value, text) {
  return el("option", { value }, text);
}

export function countFields(fields) {
  let total = 0;
  let allowed = 0;
  const walk = (nodes) => {
    for (const node of nodes) {
      total += 1;
      if (node.allowed) allowed += 1;
      if (node.fields) walk(node.fields);
    }
  };
  walk(fields);
  return { total, allowed };
}

function domId(prefix, path) {
  return `${prefix}-${path.join("--")}`;
}

function verdict(node, id) {
  const text = node.allowed ? "toegestaan" : "geweigerd";
  return el(
    "span",
    { class: "oordeel" },
    el("span", { class: `label ${node.allowed ? "ja" : "nee"}` }, text),
    " ",
    el("span", { class: "reden", id }, node.explanation),
  );
}

function argumentInputs(node, path) {
  if (!node.arguments.length) return null;
  const box = el("div", { class: "argumenten" });
  for (const argument of node.arguments) {
    const id = domId("arg", [...path, argument.name]);
    const hint = argument.list ? " — meerdere waarden gescheiden door komma’s" : "";
    const label = el(
      "label",
      { for: id },
      `${argument.name} `,
      el("code", {}, argument.type),
      argument.required ? " (verplicht)" : "",
      hint,
    );
    let input;
    if (argument.enum_values) {
      input = el("select", { id });
      if (!argument.required) input.append(option("", "(geen)"));
      for (const value of argument.enum_values) input.append(option(value, value));
    } else {
      input = el("input", { id, type: "text", spellcheck: "false", autocomplete: "off" });
      if (argument.named_type === "Date") input.placeholder = "JJJJ-MM-DD";
      if (argument.name.startsWith("vnummer")) input.placeholder = "10 cijfers, bijv. uit: ketenpoort mocks list";
    }
    input.dataset.argument = argument.name;
    input.addEventListener("input", () => changed());
    input.addEventListener("change", () => changed());
    box.append(el("div", { class: "veld" }, label, input));
  }
  return box;
}

function renderNode(node, path) {
  const here = [...path, node.name];
  const reasonId = domId("reden", here);
  const category = node.category
    ? el("span", { class: "categorie" }, node.category === "special" ? "bijzonder persoonsgegeven" : "strafrechtelijk gegeven")
    : null;
  if (!node.fields) {
    const id = domId("veld", here);
    const box = el("input", { type: "checkbox", id, "aria-describedby": reasonId });
    box.dataset.path = here.join(".");
    box.addEventListener("change", () => changed());
    return el(
      "li",
      { class: node.allowed ? "toegestaan" : "geweigerd", "data-path": here.join(".") },
      box,
      " ",
      el("label", { for: id }, el("span", { class: "naam" }, node.name), " ", el("code", {}, node.type)),
      " ",
      category,
      " ",
      verdict(node, reasonId),
    );
  }
  const children = el("ul", {}, ...node.fields.map((child) => renderNode(child, here)));
  const details = el(
    "details",
    {},
    el(
      "summary",
      {},
      el("span", { class: "naam" }, node.name),
      " ",
      el("code", {}, node.type),
      " ",
      category,
      " ",
      verdict(node, reasonId),
    ),
    argumentInputs(node, here),
    children,
  );
  details.dataset.path = here.join(".");
  return el("li", { class: node.allowed ? "toegestaan" : "geweigerd" }, details);
}

// Show `schema` (GET /explorer/api/schema) in `container`; `onChange` runs on every tick or input.
export function renderTree(container, schema, onChange) {
  changed = onChange;
  const heading = el("h3", { id: "kop-query" }, "Query");
  const list = el("ul", { class: "boom", "aria-labelledby": "kop-query" }, ...schema.fields.map((f) => renderNode(f, [])));
  container.replaceChildren(heading, list);
}

// --- query -------------------------------------------------------------------------------

function convert(value, namedType) {
  if (namedType === "Int") return Number.parseInt(value, 10);
  if (namedType === "Float") return Number.parseFloat(value);
  if (namedType === "Boolean") return value === "true";
  return value;
}

function argumentValue(argument, path) {
  const input = byId(domId("arg", [...path, argument.name]));
  const raw = input ? input.value.trim() : "";
  if (!raw) return undefined;
  if (argument.list) {
    return raw.split(",").map((v) => v.trim()).filter(Boolean).map((v) => convert(v, argument.named_type));
  }
  return convert(raw, argument.named_type);
}

function isTicked(path) {
  const box = byId(domId("veld", path));
  return Boolean(box && box.checked);
}

// The selection text of `nodes` below `path`, or "" when nothing below is ticked.
function selection(nodes, path, indent, variables, declarations) {
  const lines = [];
  for (const node of nodes) {
    const here = [...path, node.name];
    if (!node.fields) {
      if (isTicked(here)) lines.push(`${indent}${node.name}`);
      continue;
    }
    const inner = selection(node.fields, here, `${indent}  `, variables, declarations);
    if (!inner) continue;
    const args = [];
    for (const argument of node.arguments) {
      const value = argumentValue(argument, here);
      if (value === undefined && !argument.required) continue;
      const variable = [...here, argument.name].join("_");
      declarations.push(`$${variable}: ${argument.type}`);
      if (value !== undefined) variables[variable] = value;
      args.push(`${argument.name}: $${variable}`);
    }
    const call = args.length ? `${node.name}(${args.join(", ")})` : node.name;
    lines.push(`${indent}${call} {\n${inner}\n${indent}}`);
  }
  return lines.join("\n");
}

// The query (named Verkenner) and its variables for what is ticked; query is "" when nothing is.
export function queryFor(schema) {
  const variables = {};
  const declarations = [];
  const body = selection(schema.fields, [], "  ", variables, declarations);
  const header = declarations.length ? `query Verkenner(${declarations.join(", ")})` : "query Verkenner";
  return { query: body ? `${header} {\n${body}\n}\n` : "", variables };
}
