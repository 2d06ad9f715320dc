/* Lifeboat's window logic: talks only to window.pywebview.api (ui/bridge.py), which returns JSON.
   The message list is virtual (only visible rows exist; pages are fetched by offset/limit). Mail bodies
   arrive as sanitized srcdoc for an <iframe sandbox=""> and are never parsed or run here.
   window.lifeboatUI exposes read-only state for the end-to-end tests. */
"use strict";

const PAGE = 200;
const OVERSCAN = 8;
const $ = (id) => document.getElementById(id);
const S = {
  view: "folder", folder: null, folders: [], total: 0, pages: new Map(), pending: new Set(), items: null,
  index: -1, openId: null, open: null, showImages: new Set(), status: null, compose: null, files: [],
  searchSeq: 0, ready: false, errors: [], opened: 0, loaded: 0, threaded: false,
};
window.lifeboatUI = S;

let api = null;
function call(name, ...args) {
  return api[name](...args).then((out) => {
    if (out && typeof out === "object" && !Array.isArray(out) && out.error) {
      const err = new Error(out.error + (out.fix ? " (" + out.fix + ")" : ""));
      err.kind = out.kind;
      throw err;
    }
    return out;
  });
}
function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}
function opened(o) { // "Open" on a type that could run a program saves it instead: say so
  if (o && !o.opened) toast(o.why + (o.saved ? ". Saved to " + o.saved : ". Not saved."));
}
function fail(err) { S.errors.push(String(err.message || err)); toast(String(err.message || err)); }
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid != null) e.append(kid);
  return e;
}
const fmtDate = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
};
const fmtFull = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const fmtSize = (n) => (n > 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB");

/* ------------------------------------------------------------------ theme */
function isDark() { return document.documentElement.dataset.theme === "dark"; }
function setTheme(dark) {
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  $("btn-theme").setAttribute("aria-pressed", String(dark));
  $("btn-theme").textContent = dark ? "Light" : "Dark";
  try { localStorage.setItem("theme", dark ? "dark" : "light"); } catch (e) { /* private mode */ }
  if (S.openId != null) openMessage(S.openId, { keepFocus: true });
}

/* ------------------------------------------------------------------ banner */
const MODE_TEXT = {
  normal: "Normal", suspect: "Checking the connection", continuity: "Continuity mode",
  recovering: "Recovering", offline: "Offline", sign_in_needed: "Sign-in needed",
  network_blocked: "The network blocks Microsoft 365",
};
async function refreshStatus() {
  try { showStatus(await call("status")); } catch (err) { fail(err); }
}
function showStatus(st) {
    S.status = st;
    const route = st.route === "backup" ? "the backup route (SMTP relay)" : "Microsoft 365";
    let text = MODE_TEXT[st.shown] || st.shown;
    if (st.since) text += " since " + new Date(st.since).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    text += " · sending through " + route;
    if (st.shown === "offline") text += " (this computer has no network: mail waits in the outbox)";
    const signIn = st.sign_in || {};
    if (st.shown === "sign_in_needed" && signIn.state !== "running") text += " (choose Sign in)";
    if (signIn.state === "running") text += " · signing in (finish it in the sign-in window or the browser)…";
    else if (signIn.state === "failed" && st.shown === "sign_in_needed") text += " · sign-in failed: " + signIn.reason;
    $("btn-signin").hidden = st.shown !== "sign_in_needed" && signIn.state !== "running";
    $("btn-signin").disabled = signIn.state === "running";
    $("btn-signin").textContent = signIn.state === "running" ? "Signing in…" : "Sign in";
    if (st.shown === "network_blocked") text += " (" + (st.network_reason || "refused") + ": not an outage; run lifeboat doctor or ask IT)";
    if (st.paused) text += " · sync paused";
    if (st.disk_full) text += " · sync paused: the disk is full (it resumes by itself when there is room)";
    $("banner").dataset.mode = st.shown;
    if ($("banner-text").textContent !== text) $("banner-text").textContent = text;
    $("btn-force").textContent = st.mode === "continuity" || st.mode === "recovering" ? "Back to normal" : "Switch to continuity";
    const waiting = (st.outbox.queued || 0) + (st.outbox.sending || 0) + (st.outbox.uncertain || 0);
    $("outbox-count").textContent = waiting ? String(waiting) : "";
}

/* ------------------------------------------------------------------ folders */
async function loadFolders() { showFolders(await call("folders")); }
function showFolders(folders) {
  S.folders = folders;
  const ul = $("folders");
  ul.replaceChildren();
  for (const f of S.folders) {
    const li = el("li", { role: "treeitem", tabindex: "0", "aria-selected": String(f.id === S.folder),
      dataset: { folder: f.id }, "aria-label": f.name + ", " + f.count + " messages, " + f.unread + " unread",
      onclick: () => selectFolder(f.id) },
    el("span", { text: f.name }), el("span", { class: "count", text: f.unread ? f.unread + " / " + f.count : String(f.count) }));
    ul.append(li);
  }
}
function markNav() {
  for (const li of document.querySelectorAll("#nav [role=treeitem]")) {
    const on = (S.view === "folder" && li.dataset.folder === S.folder) || (li.dataset.view && li.dataset.view === S.view);
    li.setAttribute("aria-selected", String(!!on));
  }
}
function showPane(view) {
  S.view = view;
  $("list").hidden = !(view === "folder" || view === "search");
  $("outbox-view").hidden = view !== "outbox";
  $("timeline-view").hidden = view !== "timeline";
  $("app").classList.toggle("wide", view === "outbox" || view === "timeline");
  markNav();
}
async function selectFolder(id, first) {
  S.folder = id;
  S.items = null;
  $("search").value = "";
  showPane("folder");
  await resetList(first);
}

/* ------------------------------------------------------------------ virtual list */
function rowHeight() { return 3.5 * parseFloat(getComputedStyle(document.documentElement).fontSize); }
function count() { return S.items ? S.items.length : S.total; }
function itemAt(i) {
  if (S.items) return S.items[i];
  const page = S.pages.get(Math.floor(i / PAGE));
  return page ? page[i % PAGE] : undefined;
}
async function resetList(preloaded) { // preloaded: the folder's first page, if start() brought it
  S.pages = new Map();
  S.pending = new Set();
  S.index = -1;
  $("list").scrollTop = 0;
  if (!S.items) {
    const first = preloaded || await call("messages", S.folder, 0, PAGE, S.threaded);
    S.total = first.total;
    S.pages.set(0, first.items);
  }
  $("list-info").textContent = S.items ? count() + " found" : count().toLocaleString() + " messages";
  renderList();
}
function ensurePage(p) {
  if (S.items || S.pages.has(p) || S.pending.has(p) || p * PAGE >= S.total) return;
  S.pending.add(p);
  const folder = S.folder;
  call("messages", folder, p * PAGE, PAGE, S.threaded).then((out) => {
    S.pending.delete(p);
    if (folder !== S.folder) return;
    S.pages.set(p, out.items);
    renderList();
  }, (err) => { S.pending.delete(p); fail(err); });
}
function renderList() {
  const list = $("list"), spacer = $("list-spacer"), h = rowHeight(), n = count();
  spacer.style.height = n * h + "px";
  const first = Math.max(0, Math.floor(list.scrollTop / h) - OVERSCAN);
  const last = Math.min(n, Math.ceil((list.scrollTop + list.clientHeight) / h) + OVERSCAN);
  const rows = [];
  for (let i = first; i < last; i++) {
    const it = itemAt(i);
    if (!it) ensurePage(Math.floor(i / PAGE));
    const grouped = it && it.depth === 1; // an older message of the conversation above
    const row = el("div", { role: "option", id: "row-" + i, class: "row" + (it && it.unread ? " unread" : "") + (grouped ? " in-thread" : ""),
      "aria-selected": String(i === S.index), "aria-setsize": String(n), "aria-posinset": String(i + 1),
      dataset: { index: String(i), id: it ? String(it.id) : "" }, onclick: () => select(i, true) });
    row.style.top = i * h + "px";
    if (it) {
      row.append(el("div", { class: "l1" }, el("span", { class: "who", text: it.sender || "(no sender)" }),
        it.thread_size > 1 ? el("span", { class: "tsize", text: String(it.thread_size), "aria-label": it.thread_size + " messages in this conversation" }) : null,
        it.attachments ? el("span", { class: "clip", "aria-label": "has attachments" }) : null,
        el("span", { class: "when", text: fmtDate(it.date) })),
        el("div", { class: "subj", text: grouped ? "↳ " + (it.subject || "(no subject)") : it.subject || "(no subject)" }));
      row.setAttribute("aria-label", (it.unread ? "unread, " : "") + (it.sender || "no sender") + ", " + (it.subject || "no subject") + ", " + fmtDate(it.date));
    } else {
      row.append(el("div", { class: "subj", text: "Loading…" }));
    }
    rows.push(row);
  }
  spacer.replaceChildren(...rows);
  if (S.index >= 0) list.setAttribute("aria-activedescendant", "row-" + S.index);
}
function select(i, open) {
  const n = count();
  if (!n) return;
  const step = S.index >= 0 && i < S.index ? -1 : 1; // the way the user is reading: prefetch that way
  S.index = Math.max(0, Math.min(n - 1, i));
  const list = $("list"), h = rowHeight();
  const top = S.index * h;
  if (top < list.scrollTop) list.scrollTop = top;
  else if (top + h > list.scrollTop + list.clientHeight) list.scrollTop = top + h - list.clientHeight;
  renderList();
  const it = itemAt(S.index);
  if (open && it) { S.prefetchNext = S.index + step; openMessage(it.id); }
}
function prefetch() { // once a body has loaded: the next message is likely read next, have it rendered
  const i = S.prefetchNext;
  S.prefetchNext = null;
  const it = i != null && i >= 0 && i < count() ? itemAt(i) : null;
  if (it && !S.showImages.has(it.id)) call("prefetch", it.id, isDark()).catch(() => {}); // only a hint
}

/* ------------------------------------------------------------------ search */
function onSearchInput() {
  clearTimeout(onSearchInput.timer);
  onSearchInput.timer = setTimeout(runSearch, 120);
}
async function runSearch() {
  const q = $("search").value.trim();
  const seq = ++S.searchSeq;
  if (!q) { S.items = null; showPane("folder"); await resetList(); return; }
  try {
    const out = await call("search", q, 200);
    if (seq !== S.searchSeq) return; // a newer keystroke won
    S.items = out.items;
    S.query = q;
    showPane("search");
    await resetList();
  } catch (err) {
    if (seq === S.searchSeq) { $("list-info").textContent = err.message; }
  }
}

/* ------------------------------------------------------------------ reading pane */
async function openMessage(id, opts = {}) {
  S.openStart = performance.now();
  const seq = S.openSeq = (S.openSeq || 0) + 1;
  try {
    const m = await call("message", id, S.showImages.has(id), isDark());
    if (seq !== S.openSeq) return; // a slower answer for a message the user has already left
    S.callMs = performance.now() - S.openStart; // the bridge part of opening (the rest is rendering)
    S.openId = id;
    S.open = m;
    $("reader-empty").hidden = true;
    $("reader-msg").hidden = false;
    const frame = $("r-body"); // the body first: its document loads while the headers are laid out below
    frame.setAttribute("sandbox", ""); // belt and braces: never anything but an empty sandbox
    frame.srcdoc = m.srcdoc;
    $("r-subject").textContent = m.subject || "(no subject)";
    const dl = $("r-headers");
    dl.replaceChildren();
    for (const [k, v] of [["From", m.sender], ["To", m.to], ["Cc", m.cc], ["Date", fmtFull(m.date)], ["Folder", m.folder]]) {
      if (v) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    }
    const notes = $("r-notes");
    notes.replaceChildren();
    if (m.signed) notes.append(el("span", { class: "bar", text: "Signed message (the signature is not checked here)" }));
    if (m.encrypted) notes.append(el("span", { class: "bar", text: "Encrypted message: it cannot be read in Lifeboat" }));
    if (m.note) notes.append(el("span", { class: "bar", text: m.note })); // e.g. HTML too deep: shown as text
    $("r-images").hidden = !m.blocked_images;
    $("r-images-text").textContent = m.blocked_images + " remote image" + (m.blocked_images === 1 ? " was" : "s were") + " blocked to protect your privacy.";
    const atts = $("r-attachments");
    atts.replaceChildren();
    for (const a of m.attachments) {
      atts.append(el("li", {}, el("span", { text: a.filename + " (" + fmtSize(a.size) + ")" }),
        el("button", { type: "button", "aria-label": "Open " + a.filename, text: "Open", onclick: () => call("open_attachment", id, a.index).then(opened, fail) }),
        el("button", { type: "button", "aria-label": "Save " + a.filename, text: "Save…",
          onclick: () => call("save_attachment", id, a.index).then((o) => o.saved && toast("Saved to " + o.saved), fail) })));
    }
    $("r-links").hidden = !m.links.length;
    $("r-links-summary").textContent = "Links in this message (" + m.links.length + ")";
    const ol = $("r-links-list");
    ol.replaceChildren();
    m.links.forEach((url, n) => {
      ol.append(el("li", { value: String(n + 1) }, el("code", { text: url }), " ",
        el("button", { type: "button", "aria-label": "Open in your browser: " + url, text: "Open in browser",
          onclick: () => call("open_link", id, url).then(() => toast("Opened " + url), fail) })));
    });
    S.opened++;
    if (!opts.keepFocus) $("reader").scrollTop = 0;
  } catch (err) { fail(err); }
}

/* ------------------------------------------------------------------ compose */
async function compose(kind) {
  if (kind !== "new" && S.openId == null) { toast("Open a message first"); return; }
  try {
    const d = await call("draft", kind, kind === "new" ? null : S.openId);
    S.compose = d;
    S.files = [];
    $("compose-title").textContent = { new: "New message", reply: "Reply", reply_all: "Reply all", forward: "Forward" }[kind];
    $("c-to").value = d.to; $("c-cc").value = d.cc; $("c-bcc").value = d.bcc;
    $("c-subject").value = d.subject; $("c-text").value = d.text;
    $("c-error").hidden = true;
    renderFiles();
    $("compose").showModal();
    const text = $("c-text");
    (kind === "new" || kind === "forward" ? $("c-to") : text).focus();
    if (kind === "reply" || kind === "reply_all") text.setSelectionRange(0, 0);
  } catch (err) { fail(err); }
}
function renderFiles() {
  const box = $("c-files");
  box.replaceChildren();
  const kept = S.compose && S.compose.attachments ? S.compose.attachments : [];
  for (const a of kept) box.append(el("div", { text: "Attached: " + a.filename + " (" + fmtSize(a.size) + ", from the original)" }));
  for (const f of S.files) box.append(el("div", { text: "Attached: " + f }));
}
async function send(ev) {
  if (ev) ev.preventDefault();
  const d = Object.assign({}, S.compose, {
    to: $("c-to").value, cc: $("c-cc").value, bcc: $("c-bcc").value, subject: $("c-subject").value,
    text: $("c-text").value, files: S.files,
  });
  delete d.attachments;
  $("c-send").disabled = true;
  try {
    const out = await call("send", d);
    $("compose").close();
    S.compose = null;
    toast("Queued in the outbox (" + out.message_id + ")");
    refreshStatus();
    if (S.view === "outbox") showOutbox();
  } catch (err) {
    $("c-error").textContent = err.message; // the form keeps everything the user typed
    $("c-error").hidden = false;
  } finally { $("c-send").disabled = false; }
}

/* ------------------------------------------------------------------ outbox and timeline */
async function showOutbox() {
  try {
    const items = await call("outbox");
    showPane("outbox");
    const tb = $("outbox-rows");
    tb.replaceChildren();
    for (const it of items) {
      tb.append(el("tr", { dataset: { state: it.state, messageId: it.message_id } },
        el("td", {}, el("span", { class: "state state-" + it.state, text: it.state })),
        el("td", { text: it.subject || "(no subject)" }), el("td", { text: it.recipients.join(", ") }),
        el("td", { text: fmtFull(it.created_at) }), el("td", { text: String(it.attempts) }),
        el("td", { text: it.route || "" }), el("td", { text: it.last_error || "" })));
    }
    if (!items.length) tb.append(el("tr", {}, el("td", { colspan: "7", class: "empty", text: "The outbox is empty." })));
  } catch (err) { fail(err); }
}
async function showTimeline() {
  try {
    const events = await call("timeline", 500);
    showPane("timeline");
    const ol = $("timeline-rows");
    ol.replaceChildren();
    for (const e of events) ol.append(el("li", {}, el("time", { datetime: e.at || "", text: fmtFull(e.at) }), el("strong", { text: e.kind + ": " }), e.detail || ""));
    if (!events.length) ol.append(el("li", { class: "empty", text: "Nothing has happened yet." }));
  } catch (err) { fail(err); }
}

/* ------------------------------------------------------------------ keyboard */
function onKey(ev) {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
  if ($("compose").open) {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) send(ev);
    return;
  }
  if (ev.key === "Escape" && document.activeElement === $("search")) { $("search").value = ""; runSearch(); $("list").focus(); return; }
  if (typing || ev.ctrlKey || ev.altKey || ev.metaKey) return;
  const keys = {
    "/": () => $("search").focus(), j: () => select(S.index + 1, true), ArrowDown: () => select(S.index + 1, true),
    k: () => select(S.index - 1, true), ArrowUp: () => select(S.index - 1, true), Enter: () => select(S.index, true),
    Home: () => select(0, true), End: () => select(count() - 1, true),
    PageDown: () => select(S.index + Math.floor($("list").clientHeight / rowHeight()), true),
    PageUp: () => select(S.index - Math.floor($("list").clientHeight / rowHeight()), true),
    n: () => compose("new"), r: () => compose("reply"), a: () => compose("reply_all"), f: () => compose("forward"),
    o: showOutbox, t: showTimeline, s: syncNow, "?": () => $("help").showModal(), c: toggleThreads,
    i: () => { const inbox = S.folders.find((f) => f.well_known === "inbox") || S.folders[0]; if (inbox) selectFolder(inbox.id); },
  };
  const listKeys = ["Enter", "Home", "End", "PageUp", "PageDown", "ArrowUp", "ArrowDown"];
  const inList = document.activeElement === $("list") || document.activeElement === document.body;
  if (listKeys.includes(ev.key) && !inList) return; // buttons, links and the reader keep their keys
  const fn = keys[ev.key];
  if (fn) { ev.preventDefault(); fn(); }
}
function toggleThreads() {
  S.threaded = !S.threaded;
  $("btn-threads").setAttribute("aria-pressed", String(S.threaded));
  if (S.view === "folder") resetList().catch(fail);
}
function syncNow() { call("sync_now").then(() => toast("Sync requested"), fail); }

/* ------------------------------------------------------------------ demo panel (`lifeboat demo` only) */
/* The bridge has demo_outage only in demo mode (ui/demo.py); a real window never shows this panel. */
async function refreshDemo() {
  const st = await call("demo_state");
  S.demo = st.outage;
  const down = st.outage !== "normal";
  $("demo-cut").disabled = down;
  $("demo-restore").disabled = !down;
  $("demo-text").textContent = down
    ? "The simulated provider is cut (" + (st.choices[st.outage] || st.outage) + "). Wait for the banner to turn to continuity, then send a message: it leaves through the backup relay. Then restore the provider."
    : "The provider is a local simulator. Cut its mail (Exchange Online down, sign-in still up), watch the banner turn to continuity, send a message, then restore it.";
}
async function startDemo() {
  if (!api || typeof api.demo_outage !== "function") return;
  const st = await call("demo_state");
  const select = $("demo-mode");
  for (const [mode, label] of Object.entries(st.choices)) select.append(el("option", { value: mode, text: label }));
  const act = (mode) => call("demo_outage", mode).then(() => {
    toast(mode === "normal" ? "Provider restored: Lifeboat will notice and recover" : "Provider cut: Lifeboat will notice in a few seconds");
    return refreshDemo();
  }).catch(fail);
  $("demo-cut").addEventListener("click", () => act(select.value));
  $("demo-restore").addEventListener("click", () => act("normal"));
  $("demo").hidden = false;
  await refreshDemo();
  setInterval(() => refreshDemo().catch(fail), 5000);
}

/* ------------------------------------------------------------------ start */
async function start() {
  performance.mark("lifeboat-api"); // start-up marks, read by bench/ui.py
  api = window.pywebview.api;
  let dark = matchMedia("(prefers-color-scheme: dark)").matches;
  try { const saved = localStorage.getItem("theme"); if (saved) dark = saved === "dark"; } catch (e) { /* none */ }
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  $("btn-theme").setAttribute("aria-pressed", String(dark));
  $("btn-theme").textContent = dark ? "Light" : "Dark";
  $("btn-theme").addEventListener("click", () => setTheme(!isDark()));
  $("btn-sync").addEventListener("click", syncNow);
  $("btn-signin").addEventListener("click", () => {
    $("btn-signin").disabled = true;
    call("sign_in").then(() => { toast("Signing in…"); refreshStatus(); }, fail);
  });
  $("btn-force").addEventListener("click", () => {
    const to = S.status && (S.status.mode === "continuity" || S.status.mode === "recovering") ? "normal" : "continuity";
    call("force", to).then(() => toast(to === "normal" ? "Going back to normal…" : "Switching to continuity…"), fail);
  });
  $("btn-timeline").addEventListener("click", showTimeline);
  $("btn-help").addEventListener("click", () => $("help").showModal());
  $("btn-threads").addEventListener("click", toggleThreads);
  $("btn-new").addEventListener("click", () => compose("new"));
  $("nav-outbox").addEventListener("click", showOutbox);
  $("nav").addEventListener("keydown", (ev) => { // folders: Enter/Space opens, arrows move
    const items = [...document.querySelectorAll("#nav [role=treeitem]")];
    const at = items.indexOf(document.activeElement);
    if (at < 0) return;
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); ev.stopPropagation(); items[at].click(); }
    else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault(); ev.stopPropagation();
      items[Math.max(0, Math.min(items.length - 1, at + (ev.key === "ArrowDown" ? 1 : -1)))].focus();
    }
  });
  $("btn-images").addEventListener("click", () => { if (S.openId != null) { S.showImages.add(S.openId); openMessage(S.openId, { keepFocus: true }); } });
  for (const b of document.querySelectorAll("[data-compose]")) b.addEventListener("click", () => compose(b.dataset.compose));
  $("compose-form").addEventListener("submit", send);
  $("c-cancel").addEventListener("click", () => { $("compose").close(); S.compose = null; });
  $("c-attach").addEventListener("click", () => call("pick_files").then((files) => { S.files.push(...files); renderFiles(); }, fail));
  $("search").addEventListener("input", onSearchInput);
  $("r-body").addEventListener("load", () => { S.loaded++; S.openMs = performance.now() - S.openStart; prefetch(); });
  $("list").addEventListener("scroll", () => requestAnimationFrame(renderList), { passive: true });
  window.addEventListener("resize", () => requestAnimationFrame(renderList));
  document.addEventListener("keydown", onKey);
  const demo = startDemo().catch(fail);
  const init = await call("start", PAGE); // status, folders and the inbox's first page in one call
  performance.mark("lifeboat-data");
  showStatus(init.status);
  showFolders(init.folders);
  await demo;
  setInterval(refreshStatus, 2000);
  if (init.first) await selectFolder(init.first.folder, init.first);
  setInterval(() => { if (S.view === "folder") loadFolders().catch(fail); }, 30000);
  S.openMessage = openMessage; // for the end-to-end tests, which drive the window like a user would
  S.ready = true;
  document.body.dataset.ready = "1";
  performance.mark("lifeboat-ready");
}
window.addEventListener("pywebviewready", () => start().catch(fail));
