/*
 * Busflow webchat widget: lets a visitor of a bus operator's website write
 * into the operator's omnichannel inbox and read the agents' replies.
 *
 * Embed:  <script src="https://HOST/webchat/TENANT/widget.js" async></script>
 * Optional attributes on that tag: data-title (panel title), data-name (the
 * visitor's display name, shown to agents).
 *
 * Contract (all JSON, errors {"message", "extensions": {"code"}}), under
 * HOST/webchat/TENANT:
 *   POST sessions {name}            -> {visitor_id, token, expires_at}; 429 + Retry-After
 *   POST sessions/renew  (Bearer)   -> same visitor, new token (expired tokens accepted)
 *   POST messages        (Bearer) {client_message_id, text, name} -> {message_id, duplicate}
 *   GET  messages?after=C&wait=S (Bearer) -> {messages: [...], cursor}; long-polls
 *   POST read            (Bearer) {message_ids} -> {read}
 *   401 TOKEN_EXPIRED -> renew and retry; 401 otherwise -> a new session.
 *
 * Guarantees: a message is sent with one client_message_id and re-sent with
 * the same id until the server answers, so it is recorded once; each message
 * is shown once (by id), oldest first; an agent's message is acknowledged as
 * read only once it is on screen (panel open, page visible). Text is always
 * inserted as text, never as HTML. No dependencies, no build step.
 *
 * Stable hooks for tests and styling: #busflow-webchat, #bf-launcher,
 * #bf-panel, #bf-messages, .bf-message.bf-inbound / .bf-outbound (with
 * data-message-id, data-status), .bf-body, #bf-input, #bf-send.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var match = script && /^(.*\/webchat\/([^/?#]+))\/widget\.js(?:[?#].*)?$/.exec(script.src);
  if (!match || document.getElementById("busflow-webchat")) return;
  var base = match[1];
  var tenant = match[2];
  var storageKey = "busflow-webchat:" + tenant;
  var visitorName = script.getAttribute("data-name") || undefined;
  var english = /^en\b/i.test(document.documentElement.lang || "");
  var words = english
    ? { title: "Chat with us", open: "Chat", placeholder: "Write a message…", send: "Send", close: "Close", failed: "Not sent" }
    : { title: "Escríbenos", open: "Chat", placeholder: "Escribe un mensaje…", send: "Enviar", close: "Cerrar", failed: "No enviado" };

  var session = load(); // {visitor_id, token} or null
  var refreshing = null; // the one session refresh in flight
  var cursor = null;
  var polling = false;
  var shown = {}; // message id -> element
  var unread = {}; // OUTBOUND message id -> true, until acknowledged
  var acking = false;
  var ackFailures = 0;
  var outbox = Promise.resolve(); // sends go one after another, in order

  // ---- storage -----------------------------------------------------------
  function load() {
    try {
      var saved = JSON.parse(window.localStorage.getItem(storageKey) || "null");
      return saved && saved.token ? saved : null;
    } catch (e) {
      return null;
    }
  }
  function save(value) {
    session = { visitor_id: value.visitor_id, token: value.token };
    try {
      window.localStorage.setItem(storageKey, JSON.stringify(session));
    } catch (e) {
      /* private mode: the session lasts as long as the page */
    }
  }

  // ---- HTTP --------------------------------------------------------------
  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }
  function backoff(failures) {
    var ms = Math.min(30000, 1000 * Math.pow(2, Math.min(failures, 5)));
    return ms / 2 + Math.random() * ms / 2;
  }
  /** One request; resolves {status, body, headers}, rejects only on network failure. */
  function call(method, path, body, token, timeoutMs) {
    var headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    var abort = typeof AbortController === "function" ? new AbortController() : null;
    var timer = abort && setTimeout(function () { abort.abort(); }, timeoutMs || 15000);
    return fetch(base + "/" + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: abort ? abort.signal : undefined,
      credentials: "omit",
    }).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (json) {
        return { status: res.status, body: json, headers: res.headers };
      });
    }).finally(function () { if (timer) clearTimeout(timer); });
  }
  function errorCode(res) {
    return res.body && res.body.extensions && res.body.extensions.code;
  }

  async function startSession() {
    for (var failures = 0; ; failures++) {
      var res = await call("POST", "sessions", { name: visitorName });
      if (res.status === 200) return save(res.body);
      if (res.status !== 429 && res.status < 500) throw new Error("session refused: " + res.status);
      var retryAfter = Number(res.headers.get("Retry-After"));
      await sleep(retryAfter > 0 ? Math.min(retryAfter, 300) * 1000 : backoff(failures));
    }
  }
  async function renewSession() {
    var res = await call("POST", "sessions/renew", {}, session.token);
    if (res.status === 200) return save(res.body);
    if (res.status === 401) return startSession(); // too old to renew: start afresh
    throw new Error("renew failed: " + res.status);
  }
  /** Renews (or replaces) the session, once however many callers ask. */
  function refresh(expired) {
    if (!refreshing) {
      refreshing = (session && expired ? renewSession() : startSession())
        .finally(function () { refreshing = null; });
    }
    return refreshing;
  }
  /** A request with the visitor's token, refreshing it once when refused. */
  async function authed(method, path, body, timeoutMs) {
    if (!session) await refresh(false);
    var token = session.token;
    var res = await call(method, path, body, token, timeoutMs);
    if (res.status !== 401) return res;
    // Another request may have refreshed the token meanwhile: only retry then.
    if (session.token === token) await refresh(errorCode(res) === "TOKEN_EXPIRED");
    return call(method, path, body, session.token, timeoutMs);
  }

  // ---- receiving -----------------------------------------------------------
  async function pollLoop() {
    if (polling) return;
    polling = true;
    var failures = 0;
    for (;;) {
      var started = Date.now();
      var visitor = session && session.visitor_id;
      try {
        var query = "messages?wait=25" + (cursor ? "&after=" + encodeURIComponent(cursor) : "");
        var res = await authed("GET", query, undefined, 40000);
        if (visitor && session.visitor_id !== visitor) {
          cursor = null; // a new visitor: its own history, from the start
          if (res.status === 200) continue; // that answer was for the old cursor
        }
        if (res.status === 400) cursor = null; // a cursor it no longer knows: from the start
        if (res.status !== 200 || !res.body) throw new Error("poll failed: " + res.status);
        (res.body.messages || []).forEach(render);
        if (res.body.cursor) cursor = res.body.cursor;
        failures = 0;
        acknowledgeIfSeen();
        // The server holds an empty answer; one that comes back at once is
        // no reason to ask again at once.
        if (!(res.body.messages || []).length && Date.now() - started < 1000) await sleep(1000);
      } catch (e) {
        failures++;
        await sleep(backoff(failures));
      }
    }
  }

  // ---- sending -------------------------------------------------------------
  function clientMessageId() {
    var bytes = new Uint8Array(12);
    if (window.crypto && window.crypto.getRandomValues) window.crypto.getRandomValues(bytes);
    else for (var i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
    return "w" + Date.now().toString(36) + "-" + Array.prototype.map.call(bytes, function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  }
  function send(text) {
    var pending = messageElement("bf-inbound bf-pending", text, null);
    pending.setAttribute("data-status", "PENDING");
    list.appendChild(pending);
    scrollDown();
    var body = { client_message_id: clientMessageId(), text: text, name: visitorName };
    outbox = outbox.then(async function () {
      for (var failures = 0; ; failures++) {
        try {
          var res = await authed("POST", "messages", body);
          if (res.status === 200 && res.body) return confirmed(pending, res.body.message_id);
          if (res.status !== 429 && res.status < 500) return failed(pending);
        } catch (e) {
          /* network failure: the same client_message_id again, the server dedupes */
        }
        await sleep(backoff(failures));
      }
    });
    pollLoop();
  }
  function confirmed(pending, id) {
    pending.classList.remove("bf-pending");
    if (shown[id]) { // the poll brought it first
      pending.remove();
      return;
    }
    pending.setAttribute("data-message-id", id);
    pending.setAttribute("data-status", "SENT");
    shown[id] = pending;
  }
  function failed(pending) {
    pending.classList.remove("bf-pending");
    pending.setAttribute("data-status", "FAILED");
    pending.title = words.failed;
  }

  // ---- reading -------------------------------------------------------------
  function seen() {
    return !panel.hidden && document.visibilityState === "visible";
  }
  async function acknowledgeIfSeen() {
    var ids = Object.keys(unread).slice(0, 100); // the most one call may name
    updateBadge();
    if (acking || !ids.length || !seen()) return;
    acking = true;
    var done = false;
    try {
      var res = await authed("POST", "read", { message_ids: ids });
      done = res.status === 200;
    } catch (e) {
      /* tried again below */
    }
    acking = false;
    if (done) {
      ackFailures = 0;
      ids.forEach(function (id) {
        delete unread[id];
        if (shown[id]) shown[id].setAttribute("data-status", "READ");
      });
    } else {
      ackFailures++;
    }
    updateBadge();
    // Replies that arrived meanwhile, or this batch again after a pause.
    if (Object.keys(unread).length) setTimeout(acknowledgeIfSeen, done ? 0 : backoff(ackFailures));
  }

  // ---- DOM -----------------------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }
  function messageElement(kind, text, subject) {
    var item = el("li", { class: "bf-message " + kind });
    if (subject) item.appendChild(el("strong", { class: "bf-subject" }, subject));
    item.appendChild(el("p", { class: "bf-body" }, text));
    return item;
  }
  function render(message) {
    if (!message || !message.id || shown[message.id]) return;
    var outbound = message.direction === "OUTBOUND";
    var item = messageElement(outbound ? "bf-outbound" : "bf-inbound", message.body || "", message.subject);
    item.setAttribute("data-message-id", message.id);
    item.setAttribute("data-status", message.status || "");
    if (message.sent_at) item.title = new Date(message.sent_at).toLocaleString();
    shown[message.id] = item;
    // The server's order; the visitor's unconfirmed messages stay last.
    list.insertBefore(item, list.querySelector(".bf-pending"));
    if (outbound && message.status !== "READ") unread[message.id] = true;
    scrollDown();
  }
  function scrollDown() {
    list.scrollTop = list.scrollHeight;
  }
  function updateBadge() {
    var n = Object.keys(unread).length;
    badge.textContent = n ? String(n) : "";
    badge.hidden = !n;
  }
  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    if (!open) return;
    input.focus();
    scrollDown();
    if (session) acknowledgeIfSeen();
    else refresh(false).then(pollLoop, function () { /* retried when the visitor sends */ });
  }

  var css =
    "#busflow-webchat{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.4 system-ui,sans-serif;color:#1d2433}" +
    "#busflow-webchat button{font:inherit;cursor:pointer;border:0;border-radius:6px}" +
    "#bf-launcher{background:#0b6e4f;color:#fff;padding:12px 18px;border-radius:24px;box-shadow:0 2px 8px rgba(0,0,0,.25)}" +
    ".bf-badge{display:inline-block;margin-left:6px;min-width:18px;padding:0 5px;border-radius:9px;background:#e23;font-size:12px}" +
    "#bf-panel{position:absolute;right:0;bottom:56px;width:320px;height:420px;display:flex;flex-direction:column;background:#fff;border-radius:10px;box-shadow:0 4px 20px rgba(0,0,0,.25);overflow:hidden}" +
    "#bf-panel[hidden]{display:none}" +
    ".bf-header{display:flex;justify-content:space-between;align-items:center;padding:10px 12px;background:#0b6e4f;color:#fff;font-weight:600}" +
    ".bf-header button{background:none;color:#fff;font-size:18px}" +
    "#bf-messages{flex:1;overflow-y:auto;list-style:none;margin:0;padding:10px;background:#f4f6f8}" +
    ".bf-message{max-width:80%;margin:4px 0;padding:6px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}" +
    ".bf-message p{margin:0}.bf-inbound{margin-left:auto;background:#d7f2e6}.bf-outbound{background:#fff;border:1px solid #dde2e8}" +
    ".bf-pending{opacity:.6}.bf-message[data-status=FAILED]{border:1px solid #e23}" +
    "#bf-form{display:flex;gap:6px;padding:8px;border-top:1px solid #dde2e8}" +
    "#bf-input{flex:1;padding:8px;border:1px solid #c5ccd6;border-radius:6px;font:inherit}" +
    "#bf-send{background:#0b6e4f;color:#fff;padding:8px 12px}";

  var root = el("div", { id: "busflow-webchat" });
  var launcher = el("button", { id: "bf-launcher", type: "button", "aria-expanded": "false", "aria-controls": "bf-panel" }, words.open);
  var badge = el("span", { class: "bf-badge" });
  var panel = el("section", { id: "bf-panel", role: "dialog", "aria-label": script.getAttribute("data-title") || words.title });
  var header = el("div", { class: "bf-header" });
  var closer = el("button", { type: "button", class: "bf-close", "aria-label": words.close }, "×");
  var list = el("ol", { id: "bf-messages", "aria-live": "polite" });
  var form = el("form", { id: "bf-form" });
  var input = el("input", { id: "bf-input", type: "text", maxlength: "4096", autocomplete: "off", placeholder: words.placeholder, "aria-label": words.placeholder });
  var sendButton = el("button", { id: "bf-send", type: "submit" }, words.send);
  var style = el("style", {}, css);

  badge.hidden = true;
  panel.hidden = true;
  launcher.appendChild(badge);
  header.appendChild(el("span", {}, script.getAttribute("data-title") || words.title));
  header.appendChild(closer);
  form.appendChild(input);
  form.appendChild(sendButton);
  panel.appendChild(header);
  panel.appendChild(list);
  panel.appendChild(form);
  root.appendChild(style);
  root.appendChild(panel);
  root.appendChild(launcher);

  launcher.addEventListener("click", function () { setOpen(panel.hidden); });
  closer.addEventListener("click", function () { setOpen(false); });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });
  document.addEventListener("visibilitychange", acknowledgeIfSeen);

  function mount() {
    document.body.appendChild(root);
    if (session) pollLoop(); // a returning visitor: history and replies, and the unread badge
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
