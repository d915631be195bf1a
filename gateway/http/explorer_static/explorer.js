// Ketenpoort explorer: the caller's schema as a tree marked by the policy, a query built by ticking
// fields, and the answer. Served only in development mode, from the gateway itself (no external
// assets; the page's CSP is default-src 'self'). All DOM text is set with textContent.

import { countFields, el, option, queryFor, renderTree } from "./tree.js";

const API = "/explorer/api";
const state = {
  grants: null, // GET /explorer/api/grants
  schema: null, // GET /explorer/api/schema (the tree)
  token: "", // the bearer token sent with a query
  pasted: null, // {organisation, roles, purposes} of a pasted token, or null
  generation: 0, // bumped per caller change: a late answer for an earlier choice is dropped
};

const $ = (id) => document.getElementById(id);

async function api(path, init) {
  const response = await fetch(API + path, init);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const error = body && body.errors && body.errors[0];
    const message = error ? `${error.extensions.code}: ${error.message}` : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

// --- caller ------------------------------------------------------------------------------

function selected(id) {
  return $(id).value;
}

function fillSelect(id, values, describe) {
  const select = $(id);
  const previous = select.value;
  select.replaceChildren(...values.map((v) => option(v, describe ? describe(v) : v)));
  if (values.includes(previous)) select.value = previous;
}

function organisation() {
  return state.grants.organisations.find((o) => o.id === selected("organisatie"));
}

function callerRoles() {
  if (!state.pasted) return [selected("rol")];
  // Roles the policy does not know for this organisation change no decision: leave them out.
  const known = organisation().roles.map((r) => r.id);
  return state.pasted.roles.filter((r) => known.includes(r));
}

function purposesForCaller() {
  if (state.pasted) {
    return state.pasted.purposes.filter((p) => p in state.grants.purposes);
  }
  const org = organisation();
  const role = org && org.roles.find((r) => r.id === selected("rol"));
  return role ? role.purposes : [];
}

function onOrganisation() {
  const org = organisation();
  fillSelect("rol", org ? org.roles.map((r) => r.id) : []);
  onRole();
}

function onRole() {
  fillSelect("doelbinding", purposesForCaller(), (id) => {
    const purpose = state.grants.purposes[id];
    return purpose.status === "actief" ? id : `${id} (${purpose.status})`;
  });
  onPurpose();
}

function onPurpose() {
  const purpose = state.grants.purposes[selected("doelbinding")];
  fillSelect("verwerking", purpose ? purpose.activities : []);
  const uitleg = $("doelbinding-uitleg");
  if (!purpose) {
    uitleg.textContent = "Deze beller heeft geen doelbinding in het beleid.";
  } else {
    const parts = [purpose.description];
    if (purpose.status !== "actief") parts.push(`Status: ${purpose.status}. ${purpose.status_reason}`);
    parts.push(
      purpose.special_category_basis
        ? `Grondslag bijzondere persoonsgegevens: ${purpose.special_category_basis}.`
        : "Geen grondslag voor bijzondere persoonsgegevens (AVG art. 9).",
    );
    parts.push(
      purpose.criminal_data_basis
        ? `Grondslag strafrechtelijke gegevens: ${purpose.criminal_data_basis}.`
        : "Geen grondslag voor strafrechtelijke gegevens (AVG art. 10).",
    );
    uitleg.textContent = parts.join(" ");
  }
  loadCaller();
}

async function loadCaller() {
  const org = selected("organisatie");
  const purpose = selected("doelbinding");
  const status = $("schema-status");
  const generation = ++state.generation;
  $("boom").replaceChildren();
  state.schema = null;
  if (!state.pasted) state.token = ""; // a token minted for the previous choice is not reused
  if (!org || !purpose) {
    status.textContent = "Kies een organisatie, rol en doelbinding.";
    renderHeaders();
    buildQuery();
    return;
  }
  const query = new URLSearchParams({ org, doelbinding: purpose });
  for (const role of callerRoles()) query.append("role", role);
  status.textContent = "Schema wordt geladen…";
  try {
    const schema = await api(`/schema?${query}`);
    if (!state.pasted) {
      const minted = await api("/token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ org, roles: callerRoles(), doelbinding: purpose }),
      });
      if (generation !== state.generation) return;
      state.token = minted.token;
    }
    if (generation !== state.generation) return;
    state.schema = schema;
    renderTree($("boom"), schema, buildQuery);
    const counts = countFields(schema.fields);
    status.textContent =
      `${schema.organisation} (${schema.roles.join(", ")}) met doelbinding ${schema.purpose.id}: ` +
      `${counts.allowed} van de ${counts.total} velden toegestaan.`;
  } catch (error) {
    if (generation !== state.generation) return;
    status.textContent = `Het schema kon niet worden geladen: ${error.message}`;
  }
  renderHeaders();
  buildQuery();
}

async function usePastedToken() {
  const token = $("token").value.trim().replace(/^Bearer\s+/i, "");
  const status = $("token-status");
  if (!token) {
    status.textContent = "Plak eerst een token.";
    return;
  }
  try {
    const who = await api("/token/inspect", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
    if (!state.grants.organisations.some((o) => o.id === who.organisation)) {
      status.textContent = `Token geldig, maar organisatie ${who.organisation} staat niet in het beleid.`;
      return;
    }
    state.pasted = who;
    state.token = token;
    $("organisatie").value = who.organisation;
    $("organisatie").disabled = true;
    fillSelect("rol", [who.roles.join(", ")]);
    $("rol").disabled = true;
    status.textContent =
      `Token geldig: ${who.organisation}, rollen ${who.roles.join(", ") || "(geen)"}, ` +
      `doelbindingen ${who.purposes.join(", ") || "(geen)"}.`;
    onRole();
  } catch (error) {
    status.textContent = `Token geweigerd: ${error.message}`;
  }
}

function forgetPastedToken() {
  state.pasted = null;
  state.token = "";
  $("token").value = "";
  $("organisatie").disabled = false;
  $("rol").disabled = false;
  $("token-status").textContent = "Eigen token vergeten; er wordt weer een ontwikkeltoken gebruikt.";
  onOrganisation();
}

function buildQuery() {
  const { query, variables } = state.schema ? queryFor(state.schema) : { query: "", variables: {} };
  $("vraag").value = query;
  $("variabelen").value = JSON.stringify(variables, null, 2);
}

function requestHeaders() {
  return {
    Authorization: state.token ? `Bearer ${state.token}` : "",
    "X-Doelbinding": selected("doelbinding"),
    "X-Verwerking": selected("verwerking"),
  };
}

function renderHeaders() {
  const list = $("headers");
  list.replaceChildren();
  for (const [name, value] of Object.entries(requestHeaders())) {
    let shown = value || "(leeg)";
    if (name === "Authorization" && value) {
      shown = `Bearer ${state.token.slice(0, 16)}… (${state.pasted ? "eigen token" : "ontwikkeltoken, door de server aangemaakt"})`;
    }
    list.append(el("dt", {}, name), el("dd", {}, shown));
  }
}

// --- run ---------------------------------------------------------------------------------

async function run() {
  const status = $("antwoord-status");
  const dataBox = $("antwoord-data");
  const errorList = $("antwoord-errors");
  dataBox.textContent = "";
  errorList.replaceChildren();
  const query = $("vraag").value.trim();
  if (!query) {
    status.textContent = "Vink eerst velden aan of schrijf een query.";
    return;
  }
  let variables;
  try {
    variables = JSON.parse($("variabelen").value || "{}");
  } catch (_) {
    status.textContent = "De variabelen zijn geen geldige JSON.";
    return;
  }
  status.textContent = "Bezig…";
  const headers = {
    ...requestHeaders(),
    "Content-Type": "application/json",
    Accept: "application/graphql-response+json, application/json;q=0.9",
  };
  if (!headers.Authorization) delete headers.Authorization;
  let response;
  let body;
  try {
    response = await fetch("/graphql", { method: "POST", headers, body: JSON.stringify({ query, variables }) });
    body = await response.json();
  } catch (error) {
    status.textContent = `Geen antwoord: ${error.message}`;
    return;
  }
  const errors = Array.isArray(body.errors) ? body.errors : [];
  dataBox.textContent = "data" in body ? JSON.stringify(body.data, null, 2) : "(geen data: het verzoek is niet uitgevoerd)";
  for (const error of errors) {
    const code = error.extensions && error.extensions.code ? error.extensions.code : "(geen code)";
    const where = Array.isArray(error.path) ? error.path.join(".") : "(verzoek)";
    errorList.append(
      el("li", {}, el("strong", { class: "code" }, code), " bij ", el("code", { class: "pad" }, where), `: ${error.message}`),
    );
  }
  if (!errors.length) errorList.append(el("li", {}, "(geen fouten)"));
  status.textContent = `HTTP ${response.status}: ${errors.length} ${errors.length === 1 ? "fout" : "fouten"}.`;
}

// --- start -------------------------------------------------------------------------------

async function start() {
  $("organisatie").addEventListener("change", onOrganisation);
  $("rol").addEventListener("change", onRole);
  $("doelbinding").addEventListener("change", onPurpose);
  $("verwerking").addEventListener("change", renderHeaders);
  $("token-gebruiken").addEventListener("click", usePastedToken);
  $("token-vergeten").addEventListener("click", forgetPastedToken);
  $("uitvoeren").addEventListener("click", run);
  try {
    state.grants = await api("/grants");
  } catch (error) {
    $("schema-status").textContent = `Het beleid kon niet worden geladen: ${error.message}`;
    return;
  }
  fillSelect(
    "organisatie",
    state.grants.organisations.map((o) => o.id),
    (id) => `${id} — ${state.grants.organisations.find((o) => o.id === id).name}`,
  );
  onOrganisation();
}

start();
