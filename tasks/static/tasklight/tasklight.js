// Tasklight browser client: one WebSocket per page, newest object per task by seq,
// reconnect with exponential backoff and jitter, resubscribe and resync after every
// reconnect. No build step, no framework. Docs: docs/client.md; protocol: docs/protocol.md.
//
//   const client = tasklight();                 // the page's shared, connected client
//   (imported from this module; the import line is not spelled out here because
//   collectstatic rewrites module imports, comments included)
//   client.addEventListener("task", (e) => draw(e.detail.task));
//   client.addEventListener("finished", (e) => ...);     // a task reached a terminal state
//   client.addEventListener("connection", (e) => ...);   // e.detail.state, see STATES
//   await client.launch("demo.count_primes", { limit: 1000 });
//   await client.cancel(taskId);
//
// Where the API and the socket are: the JSON that {% tasklight_client %} writes into the
// page (<script id="tasklight-config">), so the URLs follow wherever the host mounts them.
//
// The connection state never claims more than is true: "live" only once the server
// has answered the subscriptions of the current socket with a snapshot (so what the
// page shows is caught up), and a socket that stops answering pings is treated as dead.

// The terminal states; the server's list (in the page's config) wins over this copy,
// which a test keeps equal to it.
const CONFIG = readConfig();
const TERMINAL = new Set(CONFIG.terminal || ["succeeded", "failed", "cancelled"]);
export const STATES = ["connecting", "live", "reconnecting", "offline"];

function readConfig() {
  const el = typeof document !== "undefined" && document.getElementById("tasklight-config");
  let config = {};
  if (el) {
    try { config = JSON.parse(el.textContent) || {}; } catch { config = {}; }
  }
  if (!el && typeof console !== "undefined") {
    console.warn("Tasklight: no {% tasklight_client %} on this page; assuming its URLs are at the site's root.");
  }
  return { api: config.api || "/api/", ws: config.ws || "/ws/tasks/", terminal: config.terminal, csrf: config.csrf };
}

/** The absolute URL of an API path ("tasks/"), under wherever the API is mounted. */
export function apiUrl(path) {
  return CONFIG.api + path.replace(/^\//, "");
}

export function isTerminal(task) {
  return TERMINAL.has(task.state);
}

function csrfToken() {
  // The page's token (works with CSRF_USE_SESSIONS and any cookie name), else the cookie.
  if (CONFIG.csrf && CONFIG.csrf.token) return CONFIG.csrf.token;
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers[(CONFIG.csrf && CONFIG.csrf.header) || "X-CSRFToken"] = csrfToken();
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(apiUrl(path), {
    method,
    credentials: "same-origin",
    headers,
    body: method === "GET" ? undefined : JSON.stringify(body === undefined ? {} : body),
  });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.detail) || `HTTP ${response.status}`);
    error.status = response.status;
    error.code = data && data.error && data.error.code;
    error.data = data;
    throw error;
  }
  return data;
}

export class TasklightClient extends EventTarget {
  constructor({ url, minDelay = 500, maxDelay = 15000, pingInterval = 15000, pongTimeout = 10000 } = {}) {
    super();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url || `${scheme}//${location.host}${CONFIG.ws}`;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.pingInterval = pingInterval;
    this.pongTimeout = pongTimeout;
    this.tasks = new Map();          // id -> newest task object
    this.receivedAt = new Map();     // id -> performance.now() when that object arrived
    this.watchAll = false;
    this.watched = new Set();        // task ids watched one by one
    this.state = "offline";
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.pingTimer = null;
    this.pendingSnapshots = 0;       // subscriptions of this socket not yet answered
    this.lastHeard = 0;
    this.closedByUs = true;
    this.listening = false;
  }

  /** Open the socket (and keep it open) until close(). */
  connect() {
    this.closedByUs = false;
    if (!this.listening) {
      this.listening = true;
      window.addEventListener("online", () => this._retryNow());
      window.addEventListener("offline", () => this._dropSocket("offline"));
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") this._retryNow();
      });
    }
    this._open();
    return this;
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    this._setState("offline");
  }

  subscribeAll() {
    if (this.watchAll) return;
    this.watchAll = true;
    this._subscribe({ type: "subscribe" });
  }

  subscribe(taskId) {
    if (this.watched.has(taskId)) return;
    this.watched.add(taskId);
    this._subscribe({ type: "subscribe", task_id: taskId });
  }

  unsubscribe(taskId) {
    if (!this.watched.delete(taskId)) return;
    this._send({ type: "unsubscribe", task_id: taskId });
  }

  /** Ask for cancellation over HTTP (it answers even while the socket reconnects). */
  cancel(taskId) {
    return api(`tasks/${encodeURIComponent(taskId)}/cancel/`, { method: "POST", body: {} })
      .then((task) => { this._accept(task); return task; })
      .catch((error) => {
        if (error.code === "already_finished") this.refresh(taskId).catch(() => {});
        throw error;
      });
  }

  launch(name, params) {
    return api("tasks/", { method: "POST", body: { name, params } })
      .then((task) => { this._accept(task); return task; });
  }

  /** Read the owner's tasks (or one task) over HTTP: a first paint before the socket answers. */
  async refresh(taskId) {
    if (taskId) {
      this._accept(await api(`tasks/${encodeURIComponent(taskId)}/`));
      return;
    }
    const data = await api("tasks/");
    for (const task of data.tasks) this._accept(task);
  }

  get(taskId) {
    return this.tasks.get(taskId);
  }

  /** Seconds left for a running task, counted down since its object arrived. */
  etaNow(task, now = performance.now()) {
    if (task.eta_seconds === null || task.eta_seconds === undefined) return null;
    const at = this.receivedAt.get(task.id);
    const waited = at === undefined ? 0 : (now - at) / 1000;
    return Math.max(0, task.eta_seconds - waited);
  }

  _retryNow() {
    if (this.closedByUs || this.state === "live") return;
    clearTimeout(this.timer);
    this._open();
  }

  _open() {
    if (this.socket) return;   // one socket at a time; a live or connecting one is kept
    if (this.closedByUs) return;
    if (navigator.onLine === false) {
      this._setState("offline");
      return;                  // the "online" event retries
    }
    this._setState(this.state === "offline" && this.attempt === 0 ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.socket = socket;
    this.pendingSnapshots = 0;
    socket.onopen = () => {
      this.lastHeard = performance.now();
      if (this.watchAll) this._subscribe({ type: "subscribe" });
      for (const id of this.watched) this._subscribe({ type: "subscribe", task_id: id });
      if (this.pendingSnapshots === 0) this._becameLive();
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this._heartbeat(socket), Math.min(this.pingInterval, this.pongTimeout) / 2);
    };
    socket.onmessage = (event) => {
      this.lastHeard = performance.now();
      this._onMessage(event.data);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      clearInterval(this.pingTimer);
      this.socket = null;
      if (this.closedByUs) return;
      if (event.code === 4001) {
        this.closedByUs = true;
        this._setState("offline");
        this._emit("session-ended", {});
        return;
      }
      this._scheduleReconnect();
    };
    socket.onerror = () => {};   // always followed by close
  }

  _heartbeat(socket) {
    if (this.socket !== socket || socket.readyState !== WebSocket.OPEN) return;
    const silent = performance.now() - this.lastHeard;
    if (silent > this.pingInterval + this.pongTimeout) {
      // Half-open: the server is gone but no close arrived. Do not keep saying "live".
      this._dropSocket(navigator.onLine === false ? "offline" : "reconnecting");
    } else if (silent >= this.pingInterval) {
      this._send({ type: "ping" });
    }
  }

  _dropSocket(state) {
    const socket = this.socket;
    if (!socket || this.closedByUs) {
      if (!this.closedByUs && state === "offline") this._setState("offline");
      return;
    }
    socket.onclose = null;
    socket.onmessage = null;
    clearInterval(this.pingTimer);
    try { socket.close(); } catch { /* already closing */ }
    this.socket = null;
    if (state === "offline") {
      clearTimeout(this.timer);
      this._setState("offline");
    } else {
      this._scheduleReconnect();
    }
  }

  _scheduleReconnect() {
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);   // "equal jitter"
    this.attempt += 1;
    this._setState(navigator.onLine === false ? "offline" : "reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._open(), delay);
  }

  _subscribe(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.pendingSnapshots += 1;
      this.socket.send(JSON.stringify(message));
    }
  }

  _send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  _becameLive() {
    this.attempt = 0;   // only a connection that served its subscriptions resets the backoff
    this._setState("live");
  }

  _onMessage(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (message.type === "snapshot") {
      for (const task of message.tasks) this._accept(task);
      this._emit("snapshot", { tasks: message.tasks });
      this._answered();
    } else if (message.type === "task") {
      this._accept(message.task);
    } else if (message.type === "error") {
      // A refused subscribe (not_found, rate_limited, ...) is answered by this error.
      if (message.task_id && this.watched.has(message.task_id) && message.code === "not_found") {
        this.watched.delete(message.task_id);
        this._answered();
      } else if (this.pendingSnapshots > 0 && (message.code === "rate_limited" || message.code === "unavailable")) {
        // A subscription was not served, so the page is not caught up: try again later
        // rather than claim to be live.
        this._emit("error", message);
        this._dropSocket("reconnecting");
        return;
      }
      this._emit("error", message);
    }
  }

  _answered() {
    if (this.pendingSnapshots > 0) {
      this.pendingSnapshots -= 1;
      if (this.pendingSnapshots === 0 && this.state !== "live") this._becameLive();
    }
  }

  _accept(task) {
    if (!task || !task.id) return;
    const known = this.tasks.get(task.id);
    if (known && known.seq >= task.seq) return;   // keep the newest by seq
    this.tasks.set(task.id, task);
    this.receivedAt.set(task.id, performance.now());
    this._emit("task", { task, previous: known || null });
    if (isTerminal(task) && (!known || !isTerminal(known))) {
      this._emit("finished", { task, seenRunning: Boolean(known) });
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("connection", { state });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

let shared = null;

/** The page's one client, created on first use and shared by every script and element. */
export function tasklight() {
  if (!shared) {
    shared = new TasklightClient().connect();
    shared.subscribeAll();
  }
  return shared;
}

/**
 * The URL a task's result may link to, resolved against the page, or null: only http:,
 * https: and relative URLs (which resolve to the page's own scheme). A result is data a
 * task wrote, so "javascript:", "data:" and any other scheme never become a link.
 */
export function safeLinkUrl(url) {
  if (typeof url !== "string" || url.trim() === "") return null;
  let resolved;
  try {
    resolved = new URL(url, location.href);
  } catch {
    return null;
  }
  return resolved.protocol === "http:" || resolved.protocol === "https:" ? resolved.href : null;
}

// A link to a file a task produced (result.download_url), served to its owner only; null
// (draw nothing) for a URL that is not http(s) or relative (safeLinkUrl).
export function downloadLink(url, className) {
  const href = safeLinkUrl(url);
  if (href === null) return null;
  const link = document.createElement("a");
  link.href = href;
  link.textContent = "Download";
  link.className = className;
  link.setAttribute("download", "");
  return link;
}

/** "about 40 s left", or "" when there is no estimate. */
export function formatEta(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  if (seconds < 1) return "less than a second left";
  if (seconds < 60) return `about ${Math.round(seconds)} s left`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min left`;
  return `about ${Math.round(minutes / 60)} h left`;
}

/** "1 min 5 s": from start to finish, or to now while the task runs. */
export function formatElapsed(task, now = Date.now()) {
  const start = Date.parse(task.started_at || task.created_at);
  const end = task.finished_at ? Date.parse(task.finished_at) : now;
  if (!Number.isFinite(start)) return "";
  const total = Math.max(0, Math.round((end - start) / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return m ? `${m} min ${s} s` : `${s} s`;
}

export function percentOf(task) {
  const p = task.progress && task.progress.percent;
  return p === null || p === undefined ? null : p;
}

// <task-progress task-id="..." [cancel]> : a live bar for one task, on any page, with a
// Cancel button while the task is unfinished when the cancel attribute is present.
class TaskProgressElement extends HTMLElement {
  static get observedAttributes() { return ["task-id", "cancel"]; }

  connectedCallback() {
    this.client = tasklight();
    if (!this.bar) {
      this.bar = document.createElement("progress");
      this.bar.max = 100;
      this.label = document.createElement("span");
      this.label.className = "task-progress-label";
      this.append(this.bar, this.label);
      this.cancelButton = document.createElement("button");
      this.cancelButton.type = "button";
      this.cancelButton.className = "tl-cancel";
      this.cancelButton.textContent = "Cancel";
      this.cancelButton.hidden = true;
      this.cancelButton.addEventListener("click", () => this.requestCancel());
      this.append(this.cancelButton);
      this.onTask = (event) => {
        if (event.detail.task.id === this.getAttribute("task-id")) this.render(event.detail.task);
      };
    }
    this.client.addEventListener("task", this.onTask);
    this.watch();
  }

  disconnectedCallback() {
    this.client.removeEventListener("task", this.onTask);
  }

  attributeChangedCallback() {
    if (this.isConnected && this.bar) this.watch();
  }

  watch() {
    const id = this.getAttribute("task-id");
    if (!id) return;
    this.bar.setAttribute("aria-label", "Task progress");
    const known = this.client.get(id);
    if (known) this.render(known);
    else this.client.refresh(id).catch(() => { this.label.textContent = "task not found"; });
    this.client.subscribe(id);
  }

  async requestCancel() {
    const id = this.getAttribute("task-id");
    if (!id) return;
    this.cancelButton.disabled = true;
    this.cancelButton.textContent = "Cancelling…";
    try {
      await this.client.cancel(id);
    } catch (error) {
      if (error.code !== "already_finished") {
        this.cancelButton.disabled = false;
        this.cancelButton.textContent = "Cancel";
        this.label.textContent = `Could not cancel: ${error.message}`;
      }
    }
  }

  render(task) {
    const finished = isTerminal(task);
    this.cancelButton.hidden = !this.hasAttribute("cancel") || finished;
    if (task.cancel_requested && !finished) {
      this.cancelButton.disabled = true;
      this.cancelButton.textContent = "Cancelling…";
    }
    const percent = percentOf(task);
    if (percent === null) {
      this.bar.removeAttribute("value");   // an indeterminate <progress>
    } else {
      this.bar.value = percent;
    }
    this.dataset.state = task.state;
    const text = `${task.state}${percent !== null ? `, ${percent}%` : ""}`;
    this.bar.setAttribute("aria-valuetext", text);
    this.bar.setAttribute("aria-label", `${task.label || task.name} progress`);
    this.label.textContent = `${task.label || task.name}: ${text}`;
  }
}

if (!customElements.get("task-progress")) customElements.define("task-progress", TaskProgressElement);
