// The search page: a plain ES module, no build step, no external resources.
// Optional server features (mode, context, highlights, more-like-this, reports) are read from /openapi.json
// and light up only when the server has them; without them the page degrades to what the API offers.

const CONTEXT_PARAGRAPHS = 1; // neighbours on each side, when the server can send them (`context=N`)
const EXCERPT_CHARS = 480; // longer passages show a window around the first highlight until expanded

const $ = (id) => document.getElementById(id);
const languageName = makeLanguageNames();

const api = {
  known: false, // /openapi.json was read; otherwise optional features are tried and their 404s handled
  searchParams: new Set(),
  modes: [],
  defaultMode: null, // "" when the server chooses (the parameter defaults to null)
  translations: [], // collapse, together, off: what to do with the index's translation groups
  defaultTranslations: null,
  similar: false,
  similarParams: new Set(),
  reports: false,
  reportPage: null, // e.g. "/reports/{report_id}" when the server publishes one
};

const view = {
  controller: null, // aborts the request in flight when a newer one starts
  lastSearch: null, // {query, response}: what "Back to results" shows again
  similarSource: null, // the passage whose neighbours are shown
  ready: false, // features are known: only then are optional routes asked for
  reportsLoaded: false,
  hitCount: 0,
  hitViews: new Map(), // passage id -> redraw, for highlights that arrive after the hits
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function makeLanguageNames() {
  let names = null;
  try {
    names = new Intl.DisplayNames(["en"], { type: "language" });
  } catch {
    names = null;
  }
  return (code) => {
    if (!code || code === "und") return "undetermined";
    try {
      const n = names && names.of(code);
      if (n && n !== code) return n;
    } catch {
      // not a well-formed language tag: show the code itself
    }
    return code;
  };
}

function langAttr(code) {
  return code && code !== "und" ? code : null;
}

function formatMs(ms) {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function paragraphLabel(p) {
  return p.part ? `¶ ${p.paragraph}.${p.part}` : `¶ ${p.paragraph}`;
}

async function getJSON(url, signal) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "Could not reach the server. Check that it is running, then try again.");
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const err = body && body.error;
    const message = (err && err.message) || `${response.status} ${response.statusText || "error"}`;
    throw new ApiError(response.status, (err && err.code) || `http_${response.status}`, message);
  }
  return body;
}

// ---------------------------------------------------------------- what the server offers

function resolveRef(spec, node) {
  let n = node;
  for (let i = 0; n && n.$ref && i < 10; i++) {
    const parts = n.$ref.replace(/^#\//, "").split("/");
    n = parts.reduce((acc, key) => (acc ? acc[key] : undefined), spec);
  }
  return n || {};
}

function enumOf(spec, schema, depth = 0) {
  const s = resolveRef(spec, schema);
  if (depth > 5) return [];
  if (Array.isArray(s.enum)) return s.enum.filter((v) => typeof v === "string");
  if (typeof s.const === "string") return [s.const];
  const out = [];
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    for (const sub of s[key] || []) out.push(...enumOf(spec, sub, depth + 1));
  }
  if (s.items) out.push(...enumOf(spec, s.items, depth + 1));
  return [...new Set(out)];
}

function queryParams(spec, operation) {
  const params = new Map();
  for (const raw of (operation && operation.parameters) || []) {
    const p = resolveRef(spec, raw);
    if (p.in === "query") params.set(p.name, p.schema || {});
  }
  return params;
}

function readFeatures(spec) {
  const paths = (spec && spec.paths) || {};
  const searchParams = queryParams(spec, paths["/search"] && paths["/search"].get);
  api.known = true;
  api.searchParams = new Set(searchParams.keys());
  if (searchParams.has("mode")) {
    const schema = searchParams.get("mode");
    const modes = enumOf(spec, schema);
    api.modes = modes.length ? modes : ["dense", "hybrid"];
    const d = resolveRef(spec, schema).default;
    api.defaultMode = api.modes.includes(d) ? d : "";
  }
  if (searchParams.has("translations")) {
    const schema = searchParams.get("translations");
    api.translations = enumOf(spec, schema);
    const d = resolveRef(spec, schema).default;
    api.defaultTranslations = api.translations.includes(d) ? d : "";
  }
  const similar = Object.keys(paths).find((p) => /^\/passages\/\{[^}]+\}\/similar$/.test(p) && paths[p].get);
  api.similar = Boolean(similar);
  if (similar) api.similarParams = new Set(queryParams(spec, paths[similar].get).keys());
  api.reports = Boolean(paths["/reports"] && paths["/reports"].get);
  const pages = Object.keys(paths).filter((p) => /^\/reports\/\{[^}]+\}/.test(p) && paths[p].get);
  api.reportPage = pages.find((p) => /html/i.test(p)) || pages[0] || null;
}

// ---------------------------------------------------------------- filters

function buildLanguageChips(articles, wanted) {
  const box = $("langs");
  const counts = new Map();
  for (const a of articles || []) {
    for (const l of a.languages || []) counts.set(l, (counts.get(l) || 0) + 1);
  }
  for (const l of wanted) if (!counts.has(l)) counts.set(l, 0);
  const codes = [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a) || a.localeCompare(b));
  $("langs-empty").remove();
  if (!codes.length) {
    box.append(el("span", { class: "muted", text: "No languages in the index yet." }));
    return;
  }
  for (const code of codes) {
    const input = el("input", { type: "checkbox", name: "lang", value: code, id: `lang-${code}` });
    input.checked = wanted.includes(code);
    input.addEventListener("change", rerunIfSearched);
    box.append(
      el(
        "label",
        { class: "chip", for: `lang-${code}` },
        input,
        el("span", {}, languageName(code), " ", el("span", { class: "code", text: code })),
      ),
    );
  }
}

// Radio chips for one of the server's choices (mode, translations); "" stands for the server's own default.
function buildChoiceChips(box, name, values, serverDefault, wanted) {
  if (!values.length) return;
  const chosen = values.includes(wanted) ? wanted : serverDefault;
  const choices = serverDefault === "" ? ["", ...values] : values;
  for (const value of choices) {
    const id = `${name}-${value || "default"}`;
    const input = el("input", { type: "radio", name, value, id });
    input.checked = value === chosen;
    input.addEventListener("change", rerunIfSearched);
    box.append(el("label", { class: "chip", for: id }, input, el("span", { text: value || "default" })));
  }
  box.hidden = false;
}

function readForm() {
  const langs = [...document.querySelectorAll('input[name="lang"]:checked')].map((i) => i.value);
  const mode = document.querySelector('input[name="mode"]:checked');
  const translations = document.querySelector('input[name="translations"]:checked');
  return {
    q: $("q").value.trim(),
    k: Number($("k").value) || 10,
    langs,
    mode: (mode && mode.value) || null,
    translations: (translations && translations.value) || null,
  };
}

function rerunIfSearched() {
  if ($("q").value.trim() && $("results").dataset.state !== "idle") runSearch();
}

// ---------------------------------------------------------------- URL (permalink)

function pageUrl(params) {
  const query = params.toString();
  return `${location.pathname}${query ? `?${query}` : ""}${location.hash}`;
}

function searchPermalink(query) {
  const p = new URLSearchParams();
  p.set("q", query.q);
  for (const l of query.langs) p.append("lang", l);
  if (query.mode && query.mode !== api.defaultMode) p.set("mode", query.mode);
  if (query.translations && query.translations !== api.defaultTranslations) p.set("translations", query.translations);
  if (query.k !== 10) p.set("k", String(query.k));
  return pageUrl(p);
}

function setPermalink(url) {
  history.replaceState(null, "", url);
  const link = $("permalink");
  link.href = url;
  link.hidden = false;
}

// ---------------------------------------------------------------- states

function setState(state) {
  const results = $("results");
  results.dataset.state = state;
  delete results.dataset.highlights;
  results.setAttribute("aria-busy", state === "loading" ? "true" : "false");
  $("idle").hidden = state !== "idle";
  if (state !== "error") {
    $("error").hidden = true;
    $("error").textContent = "";
  }
}

function setStatus(text) {
  $("status-text").textContent = text;
}

function showError(err, what) {
  setState("error");
  $("hits").replaceChildren();
  $("similar-bar").hidden = true;
  const box = $("error");
  box.replaceChildren(el("strong", { text: `${what} failed. ` }), err.message);
  box.hidden = false;
  setStatus(`${what} failed.`);
}

function startRequest() {
  if (view.controller) view.controller.abort();
  view.controller = new AbortController();
  return view.controller;
}

// ---------------------------------------------------------------- search

function searchUrl(query, { highlight = false } = {}) {
  const p = new URLSearchParams();
  p.set("q", query.q);
  p.set("k", String(query.k));
  for (const l of query.langs) p.append("lang", l);
  if (query.mode && api.searchParams.has("mode")) p.set("mode", query.mode);
  if (query.translations && api.searchParams.has("translations")) p.set("translations", query.translations);
  if (api.searchParams.has("context")) p.set("context", String(CONTEXT_PARAGRAPHS));
  if (highlight) p.set("highlight", "true");
  return `search?${p}`;
}

async function runSearch() {
  const query = readForm();
  if (!query.q) {
    setState("idle");
    $("hits").replaceChildren();
    setStatus("Type a question first.");
    $("q").focus();
    return;
  }
  setPermalink(searchPermalink(query));
  const controller = startRequest();
  setState("loading");
  setStatus(`Searching for “${query.q}”…`);
  try {
    const response = await getJSON(searchUrl(query), controller.signal);
    view.lastSearch = { query, response };
    showSearch(query, response);
    if (response.hits && response.hits.length && api.searchParams.has("highlight")) {
      await addHighlights(query, response, controller);
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(e, "Search");
  } finally {
    if (view.controller === controller) view.controller = null;
  }
}

// Highlights cost the server a model call per sentence, so the hits show first and their best sentences are
// marked when a second request (same query, same ranking) brings them.
async function addHighlights(query, response, controller) {
  const results = $("results");
  results.dataset.highlights = "loading";
  $("hl-note").hidden = false;
  try {
    const marked = await getJSON(searchUrl(query, { highlight: true }), controller.signal);
    const byId = new Map((marked.hits || []).map((h) => [h.passage_id, h.highlights]));
    for (const h of response.hits) {
      const highlights = byId.get(h.passage_id);
      if (!highlights) continue;
      h.highlights = highlights;
      const update = view.hitViews.get(h.passage_id);
      if (update) update();
    }
    results.dataset.highlights = "done";
  } catch (e) {
    if (e.name === "AbortError") throw e;
    results.dataset.highlights = "failed";
    setStatus(`${$("status-text").textContent} · best sentences unavailable: ${e.message}`);
  } finally {
    $("hl-note").hidden = true;
  }
}

function showSearch(query, response) {
  $("similar-bar").hidden = true;
  const hits = response.hits || [];
  const where = query.langs.length ? ` in ${query.langs.map(languageName).join(", ")}` : "";
  const ql = response.query_lang;
  const mode = response.mode ? ` · ${response.mode}` : "";
  const serverDefault = $("mode-default");
  if (serverDefault && serverDefault.checked && response.mode) {
    serverDefault.nextElementSibling.textContent = `default (${response.mode})`;
  }
  const about = `query language: ${languageName(ql)} (${ql})${mode} · ${formatMs(response.took_ms || 0)}`;
  if (!hits.length) {
    setState("empty");
    $("hits").replaceChildren(emptyMessage(query));
    setStatus(`No passages found${where} · ${about}`);
  } else {
    setState("results");
    renderHits(hits);
    setStatus(`${hits.length} ${hits.length === 1 ? "result" : "results"}${where} · ${about}`);
  }
}

function emptyMessage(query) {
  const li = el("li", { class: "empty" }, el("p", { text: `No passages match “${query.q}”.` }));
  if (query.langs.length) {
    li.append(
      el(
        "p",
        {},
        "Only ",
        query.langs.map(languageName).join(", "),
        " passages were searched. ",
        el("button", { type: "button", class: "link", text: "Search every language", onclick: clearLanguages }),
      ),
    );
  }
  return li;
}

function clearLanguages() {
  for (const i of document.querySelectorAll('input[name="lang"]:checked')) i.checked = false;
  runSearch();
}

// ---------------------------------------------------------------- hits

function renderHits(hits) {
  view.hitViews.clear();
  $("hits").replaceChildren(...hits.map((h) => renderHit(h, view.hitCount++)));
}

function renderHit(h, n) {
  const id = `hit-${n}`;
  const body = h.text || "";
  let ranges = highlightRanges(h);
  let cut = excerpt(body, ranges, EXCERPT_CHARS);
  const note = el("p", { class: "note", role: "status" });
  const panel = el("div", { class: "context", id: `${id}-more`, hidden: true });
  const hasContext = contextItems(h) !== null;
  const noun = hasContext ? "context" : "details";
  const text = el("p", { class: "text", lang: langAttr(h.lang) });
  const expand = el("button", {
    type: "button",
    class: "secondary",
    "aria-expanded": "false",
    "aria-controls": panel.id,
    text: `Show ${noun}`,
  });
  // without neighbouring paragraphs the panel adds the section and ids, and the passage itself shows in full
  const showText = () => {
    const full = !hasContext && expand.getAttribute("aria-expanded") === "true";
    text.replaceChildren(...(full ? markedText(body, ranges) : markedText(body, ranges, cut.start, cut.end)));
  };
  showText();
  expand.addEventListener("click", () => {
    const open = expand.getAttribute("aria-expanded") !== "true";
    if (open && !panel.childElementCount) panel.append(...contextPanel(h, ranges));
    panel.hidden = !open;
    expand.setAttribute("aria-expanded", String(open));
    expand.textContent = `${open ? "Hide" : "Show"} ${noun}`;
    showText();
  });
  view.hitViews.set(h.passage_id, () => {
    ranges = highlightRanges(h);
    cut = excerpt(body, ranges, EXCERPT_CHARS);
    showText();
    if (panel.childElementCount) panel.replaceChildren(...contextPanel(h, ranges));
  });
  const actions = el("div", { class: "actions" }, expand);
  if (api.similar || !api.known) {
    actions.append(
      el("button", {
        type: "button",
        class: "secondary",
        text: "More like this",
        "aria-describedby": `${id}-title`,
        onclick: () => showSimilar(h, note),
      }),
    );
  }
  const score = typeof h.score === "number" ? h.score.toPrecision(3) : "";
  return el(
    "li",
    { class: "hit", "data-lang": h.lang, "data-passage-id": h.passage_id },
    el(
      "article",
      { "aria-labelledby": `${id}-title` },
      el(
        "div",
        { class: "meta" },
        h.rank ? el("span", { class: "rank", text: `#${h.rank}` }) : null,
        el(
          "span",
          { class: "badge", title: languageName(h.lang) },
          el("span", { class: "vh", text: "language " }),
          h.lang,
        ),
        score ? el("span", { class: "score", title: "higher is better" }, `score ${score}`) : null,
        el("span", { class: "para", title: `paragraph ${h.paragraph} (0-based), part ${h.part}` }, paragraphLabel(h)),
      ),
      el("h3", { id: `${id}-title` }, el("span", { class: "title", text: h.title || h.article_id })),
      text,
      translationsOf(h),
      actions,
      note,
      panel,
    ),
  );
}

// The hit's other languages (its translation group, with translations=collapse or together): with collapse they
// come with their text and open under the hit; with together each is a hit of its own further down, so only named.
function translationsOf(h) {
  const others = Array.isArray(h.translations) ? h.translations : [];
  if (!others.length) return null;
  const names = [...new Set(others.map((t) => languageName(t.lang)))].join(", ");
  const withText = others.filter((t) => typeof t.text === "string" && t.text);
  if (!withText.length) {
    return el("p", { class: "translations note" }, `Also in ${names}, among these results.`);
  }
  return el(
    "details",
    { class: "translations" },
    el("summary", {}, `Also in ${names}`),
    el(
      "ul",
      { "aria-label": "Translations of this passage" },
      withText.map((t) =>
        el(
          "li",
          { "data-lang": t.lang, "data-passage-id": t.passage_id },
          el("span", { class: "badge", title: languageName(t.lang) }, el("span", { class: "vh", text: "language " }), t.lang),
          " ",
          el("span", { lang: langAttr(t.lang), text: t.text }),
        ),
      ),
    ),
  );
}

// `highlights` are sentences with offsets; offsets may count in the passage or in the article text, so each one
// is placed only where its text really is. A highlight that cannot be placed is dropped, never guessed.
function highlightRanges(h) {
  const text = h.text || "";
  const found = [];
  for (const x of Array.isArray(h.highlights) ? h.highlights : []) {
    const t = typeof x === "string" ? x : x && (x.text ?? x.sentence ?? null);
    let range = null;
    if (x && typeof x === "object" && Number.isInteger(x.start) && Number.isInteger(x.end)) {
      for (const base of [0, h.start || 0]) {
        const a = x.start - base;
        const b = x.end - base;
        if (a >= 0 && b <= text.length && a < b && (t == null || text.slice(a, b) === t)) {
          range = [a, b];
          break;
        }
      }
    }
    if (!range && typeof t === "string" && t) {
      const i = text.indexOf(t);
      if (i >= 0) range = [i, i + t.length];
    }
    if (range) found.push(range);
  }
  found.sort((r1, r2) => r1[0] - r2[0]);
  const merged = [];
  for (const r of found) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([...r]);
  }
  return merged;
}

function excerpt(text, ranges, max) {
  if (text.length <= max) return { start: 0, end: text.length };
  const focus = ranges.length ? ranges[0][0] : 0;
  let start = Math.max(0, focus - Math.floor(max / 5));
  let end = Math.min(text.length, start + max);
  start = Math.max(0, end - max);
  if (start > 0) {
    const space = text.slice(start, start + 40).search(/\s/);
    if (space >= 0 && start + space + 1 <= focus) start += space + 1;
  }
  if (end < text.length) {
    const space = text.lastIndexOf(" ", end);
    if (space > end - 40 && space > start) end = space;
  }
  return { start, end };
}

function markedText(text, ranges, from = 0, to = text.length) {
  const out = [];
  if (from > 0) out.push("… ");
  let pos = from;
  for (const [a, b] of ranges) {
    const s = Math.max(a, from);
    const e = Math.min(b, to);
    if (e <= s) continue;
    if (s > pos) out.push(text.slice(pos, s));
    out.push(el("mark", { text: text.slice(s, e) }));
    pos = e;
  }
  if (pos < to) out.push(text.slice(pos, to));
  if (to < text.length) out.push(" …");
  return out;
}

function contextPanel(h, ranges) {
  const parts = [];
  const fused = h.ranks && typeof h.ranks === "object" ? Object.entries(h.ranks) : [];
  const ranks = fused.map(([list, rank]) => `${list} #${rank}`).join(" · ");
  if (h.section) parts.push(el("p", { class: "section" }, el("span", { class: "label", text: "Section " }), h.section));
  const items = contextItems(h);
  if (items) {
    parts.push(
      el(
        "ol",
        { class: "ctx", "aria-label": "Neighbouring paragraphs" },
        items.map((c) =>
          el(
            "li",
            { class: c.self ? "current" : null, "aria-current": c.self ? "true" : null },
            c.paragraph !== undefined ? el("span", { class: "para", text: paragraphLabel(c) }) : null,
            el("p", { lang: langAttr(c.lang) }, c.self ? markedText(h.text || "", ranges) : c.text),
          ),
        ),
      ),
    );
    if (items.length === 1) parts.push(el("p", { class: "muted", text: "No neighbouring paragraphs." }));
  } else if (!h.section) {
    parts.push(el("p", { class: "muted", text: "This passage stands under no section heading." }));
  }
  parts.push(
    el(
      "dl",
      { class: "ids" },
      el("dt", { text: "Article" }),
      el("dd", { text: h.article_id }),
      el("dt", { text: "Passage" }),
      el("dd", {}, el("a", { href: `passages/${encodeURIComponent(h.passage_id)}`, text: h.passage_id })),
      el("dt", { text: "Characters" }),
      el("dd", { text: `${h.start}–${h.end}` }),
      ranks ? el("dt", { text: "Ranks" }) : null,
      ranks ? el("dd", { text: ranks }) : null,
    ),
  );
  return parts;
}

// `context` may be a list of neighbouring passages (marked `position: before|after`, or ordered by paragraph, with
// or without the hit itself) or {before: [...], after: [...]}. No neighbours at all is null: nothing to show.
function contextItems(h) {
  const c = h.context;
  if (!c || typeof c !== "object") return null;
  const norm = (x) => (typeof x === "string" ? { text: x } : { ...x });
  const order = (xs) => xs.sort((a, b) => (a.paragraph ?? 0) - (b.paragraph ?? 0) || (a.part ?? 0) - (b.part ?? 0));
  const self = { ...h, self: true };
  if (!Array.isArray(c)) {
    const before = (c.before || []).map(norm);
    const after = (c.after || []).map(norm);
    return before.length || after.length ? [...before, self, ...after] : null;
  }
  if (!c.length) return null;
  const items = c.map(norm);
  if (items.some((x) => x.position === "before" || x.position === "after")) {
    const at = (pos) => order(items.filter((x) => x.position === pos));
    return [...at("before"), self, ...at("after")];
  }
  const isSelf = (x) =>
    (x.passage_id && x.passage_id === h.passage_id) ||
    (x.passage_id === undefined && x.paragraph === h.paragraph && (x.part ?? 0) === h.part);
  const marked = items.map((x) => (isSelf(x) ? self : x));
  if (!marked.some((x) => x.self)) {
    const at = marked.findIndex((x) => x.paragraph !== undefined && x.paragraph > h.paragraph);
    marked.splice(at < 0 ? marked.length : at, 0, self);
  }
  return marked;
}

// ---------------------------------------------------------------- more like this

const SAME_ARTICLE = "exclude_same_article"; // the server leaves a passage's own article out unless told not to

function similarUrl(passageId, k) {
  const p = new URLSearchParams();
  if (!api.known || api.similarParams.has("k")) p.set("k", String(k));
  if (api.similarParams.has("lang")) for (const l of readForm().langs) p.append("lang", l);
  if (api.similarParams.has(SAME_ARTICLE) && $("same-article").checked) p.set(SAME_ARTICLE, "false");
  const query = p.toString();
  return `passages/${encodeURIComponent(passageId)}/similar${query ? `?${query}` : ""}`;
}

async function showSimilar(source, note, { focus = true } = {}) {
  const controller = startRequest();
  note.textContent = "Finding similar passages…";
  try {
    const body = await getJSON(similarUrl(source.passage_id, readForm().k), controller.signal);
    note.textContent = "";
    const raw = Array.isArray(body) ? body : (body && (body.hits || body.similar || body.results)) || [];
    const hits = raw.filter((h) => h.passage_id !== source.passage_id);
    view.similarSource = source;
    const sameArticle = api.similarParams.has(SAME_ARTICLE);
    const p = new URLSearchParams({ similar: source.passage_id });
    if (sameArticle && $("same-article").checked) p.set("same", "1");
    setPermalink(pageUrl(p));
    setState(hits.length ? "results" : "empty");
    const name = `${source.title || source.article_id} ${paragraphLabel(source)}`;
    $("similar-of").replaceChildren("Passages like ", el("strong", { text: name }), ` (${source.lang})`);
    $("similar-bar").hidden = false;
    $("same-article-choice").hidden = !sameArticle;
    $("back").hidden = !view.lastSearch;
    if (hits.length) {
      renderHits(hits);
    } else {
      const hint =
        sameArticle && !$("same-article").checked
          ? " in other articles. Tick “Include passages of the same article” to look in this one too."
          : ".";
      $("hits").replaceChildren(el("li", { class: "empty", text: `No similar passages${hint}` }));
    }
    setStatus(`${hits.length} ${hits.length === 1 ? "passage" : "passages"} like ${name}`);
    if (focus) $("results").focus();
  } catch (e) {
    if (e.name === "AbortError") return;
    note.textContent =
      e.status === 404 && e.code !== "not_found"
        ? "More like this is not available on this server yet."
        : `More like this failed: ${e.message}`;
  } finally {
    if (view.controller === controller) view.controller = null;
  }
}

async function similarFromUrl(passageId) {
  try {
    const passage = await getJSON(`passages/${encodeURIComponent(passageId)}`);
    await showSimilar(passage, $("status-text"), { focus: false });
  } catch (e) {
    showError(e, "Loading the passage");
  }
}

function backToResults() {
  if (!view.lastSearch) return;
  const { query, response } = view.lastSearch;
  setPermalink(searchPermalink(query));
  showSearch(query, response);
  $("q").focus();
}

// ---------------------------------------------------------------- reports

function reportHref(r) {
  for (const key of ["html_url", "url", "href", "html", "link"]) {
    if (typeof r[key] === "string" && r[key]) return r[key];
  }
  if (!api.reportPage) return null;
  let missing = false;
  const path = api.reportPage.replace(/\{([^}]+)\}/g, (_, name) => {
    const v = r[name] ?? r.id ?? r.report_id ?? r.name;
    if (v === undefined || v === null) missing = true;
    return encodeURIComponent(String(v));
  });
  return missing ? null : path.replace(/^\//, "");
}

function renderReport(r) {
  const title = r.title || r.name || r.id || r.report_id || "report";
  const href = reportHref(r);
  const when = r.created_at || r.created || r.run_at || r.started_at || r.finished_at || r.date || r.time;
  const kind = r.kind || r.type;
  const summary = typeof r.summary === "string" ? r.summary : typeof r.description === "string" ? r.description : "";
  return el(
    "li",
    {},
    href
      ? el("a", { href, target: "_blank", rel: "noopener", text: title })
      : el("span", { class: "title", text: title }),
    kind ? el("span", { class: "badge", text: kind }) : null,
    when ? el("span", { class: "muted", text: ` ${when}` }) : null,
    summary ? el("p", { class: "muted", text: summary }) : null,
  );
}

async function loadReports() {
  if (view.reportsLoaded) return;
  view.reportsLoaded = true;
  const status = $("reports-status");
  const list = $("reports-list");
  const none = () => status.replaceChildren(el("p", { class: "empty", text: "No reports yet." }));
  if (api.known && !api.reports) {
    none();
    return;
  }
  status.textContent = "Loading reports…";
  try {
    const body = await getJSON("reports");
    const items = Array.isArray(body) ? body : (body && (body.reports || body.items)) || [];
    if (!items.length) {
      none();
      return;
    }
    status.textContent = `${items.length} ${items.length === 1 ? "report" : "reports"}`;
    list.replaceChildren(...items.map(renderReport));
  } catch (e) {
    if (e.status === 404) none();
    else
      status.replaceChildren(
        el("p", { class: "error", role: "alert", text: `Reports could not be listed: ${e.message}` }),
      );
    view.reportsLoaded = e.status === 404;
  }
}

// ---------------------------------------------------------------- page

function showView() {
  const reports = location.hash === "#reports";
  $("search").hidden = reports;
  $("reports").hidden = !reports;
  $(reports ? "nav-search" : "nav-reports").removeAttribute("aria-current");
  $(reports ? "nav-reports" : "nav-search").setAttribute("aria-current", "page");
  if (reports && view.ready) loadReports();
}

function onKey(e) {
  if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  const typing =
    t instanceof HTMLElement &&
    (t.isContentEditable ||
      /^(TEXTAREA|SELECT)$/.test(t.tagName) ||
      (t.tagName === "INPUT" && !/^(checkbox|radio|button|submit|reset)$/.test(t.type)));
  if (typing) return;
  e.preventDefault();
  if (location.hash === "#reports") {
    location.hash = "#search";
  }
  $("q").focus();
  $("q").select();
}

function describeIndex(health) {
  if (!health) return;
  const bits = [`${health.index_size} passages`];
  if (health.model) bits.push(`model ${health.model}`);
  if (health.build_id) bits.push(`build ${health.build_id}`);
  $("about").textContent = `Index: ${bits.join(" · ")}`;
}

async function init() {
  const params = new URLSearchParams(location.search);
  $("q").value = params.get("q") || "";
  const k = params.get("k");
  if (k && [...$("k").options].some((o) => o.value === k)) $("k").value = k;

  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    runSearch();
  });
  $("k").addEventListener("change", rerunIfSearched);
  $("back").addEventListener("click", backToResults);
  $("same-article").checked = params.get("same") === "1";
  $("same-article").addEventListener("change", () => {
    if (view.similarSource) showSimilar(view.similarSource, $("status-text"), { focus: false });
  });
  for (const b of document.querySelectorAll("button.example")) {
    b.addEventListener("click", () => {
      $("q").value = b.dataset.q;
      runSearch();
    });
  }
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", showView);
  showView();

  const [spec, articles, health] = await Promise.allSettled([
    getJSON("openapi.json"),
    getJSON("articles"),
    getJSON("health"),
  ]);
  if (spec.status === "fulfilled") readFeatures(spec.value);
  if (articles.status === "fulfilled") {
    buildLanguageChips(articles.value, params.getAll("lang"));
  } else {
    $("langs-empty").textContent = `Languages could not be loaded: ${articles.reason.message}`;
  }
  buildChoiceChips($("modes"), "mode", api.modes, api.defaultMode, params.get("mode"));
  buildChoiceChips(
    $("translations-choice"),
    "translations",
    api.translations,
    api.defaultTranslations,
    params.get("translations"),
  );
  if (health.status === "fulfilled") describeIndex(health.value);
  view.ready = true;
  showView();
  document.body.dataset.ready = "true";

  const similar = params.get("similar");
  if (similar && (api.similar || !api.known)) await similarFromUrl(similar);
  else if ($("q").value.trim()) await runSearch();
}

init();
