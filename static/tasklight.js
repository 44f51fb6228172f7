// Tasklight browser client: one WebSocket per page, newest object per task by seq,
// reconnect with exponential backoff and jitter, resubscribe and resync after every
// reconnect. No build step, no framework. Protocol: docs/protocol.md.

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function isTerminal(task) {
  return TERMINAL.has(task.state);
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function api(path, { method = "GET", body } = {}) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.detail) || `HTTP ${response.status}`);
    error.status = response.status;
    error.code = data && data.error && data.error.code;
    throw error;
  }
  return data;
}

export class TasklightClient extends EventTarget {
  constructor({ url, minDelay = 500, maxDelay = 15000 } = {}) {
    super();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url || `${scheme}//${location.host}/ws/tasks/`;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.tasks = new Map();          // id -> newest task object
    this.watchAll = false;
    this.watched = new Set();        // task ids watched one by one
    this.state = "offline";
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.pingTimer = null;
    this.closedByUs = false;
  }

  connect() {
    this.closedByUs = false;
    this._open();
    window.addEventListener("online", () => this._retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this._retryNow();
    });
    return this;
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
    this._setState("offline");
  }

  subscribeAll() {
    this.watchAll = true;
    this._send({ type: "subscribe" });
  }

  subscribe(taskId) {
    this.watched.add(taskId);
    this._send({ type: "subscribe", task_id: taskId });
  }

  unsubscribe(taskId) {
    this.watched.delete(taskId);
    this._send({ type: "unsubscribe", task_id: taskId });
  }

  cancel(taskId) {
    // The HTTP API answers even while the socket reconnects.
    return api(`/api/tasks/${encodeURIComponent(taskId)}/cancel/`, { method: "POST", body: {} })
      .then((task) => { this._accept(task); return task; });
  }

  launch(name, params) {
    return api("/api/tasks/", { method: "POST", body: { name, params } })
      .then((task) => { this._accept(task); return task; });
  }

  get(taskId) {
    return this.tasks.get(taskId);
  }

  _retryNow() {
    if (this.state !== "live" && !this.closedByUs) {
      clearTimeout(this.timer);
      this._open();
    }
  }

  _open() {
    if (this.socket && (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING)) return;
    this._setState(this.attempt === 0 && this.state === "offline" ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this._setState("live");
      if (this.watchAll) socket.send(JSON.stringify({ type: "subscribe" }));
      for (const id of this.watched) socket.send(JSON.stringify({ type: "subscribe", task_id: id }));
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this._send({ type: "ping" }), 25000);
    };
    socket.onmessage = (event) => this._onMessage(event.data);
    socket.onclose = (event) => {
      clearInterval(this.pingTimer);
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closedByUs) return;
      if (event.code === 4001) {
        this._setState("offline");
        this._emit("session-ended", {});
        return;
      }
      this._scheduleReconnect();
    };
    socket.onerror = () => {};
  }

  _scheduleReconnect() {
    this._setState(navigator.onLine === false ? "offline" : "reconnecting");
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);  // "equal jitter"
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._open(), delay);
  }

  _send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  _onMessage(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (message.type === "snapshot") {
      for (const task of message.tasks) this._accept(task);
      this._emit("snapshot", { tasks: message.tasks });
    } else if (message.type === "task") {
      this._accept(message.task);
    } else if (message.type === "error") {
      this._emit("error", message);
    }
  }

  _accept(task) {
    if (!task || !task.id) return;
    const known = this.tasks.get(task.id);
    if (known && known.seq >= task.seq) return;   // keep the newest by seq
    this.tasks.set(task.id, task);
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

// The page's one client, created on first use and shared by every script and element.
export function tasklight() {
  if (!shared) {
    shared = new TasklightClient().connect();
    shared.subscribeAll();
  }
  return shared;
}

export function formatEta(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return "less than a second left";
  if (seconds < 60) return `about ${Math.round(seconds)} s left`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min left`;
  return `about ${Math.round(minutes / 60)} h left`;
}

export function formatElapsed(task, now = Date.now()) {
  const start = Date.parse(task.started_at || task.created_at);
  const end = task.finished_at ? Date.parse(task.finished_at) : now;
  if (!Number.isFinite(start)) return "";
  const total = Math.max(0, Math.round((end - start) / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return m ? `${m} min ${s} s` : `${s} s`;
}

// <task-progress task-id="..."> : a live bar for one task, on any page.
class TaskProgressElement extends HTMLElement {
  connectedCallback() {
    this.client = tasklight();
    this.bar = document.createElement("progress");
    this.bar.max = 100;
    this.label = document.createElement("span");
    this.label.className = "task-progress-label";
    this.append(this.bar, this.label);
    this.onTask = (event) => {
      if (event.detail.task.id === this.getAttribute("task-id")) this.render(event.detail.task);
    };
    this.client.addEventListener("task", this.onTask);
    const id = this.getAttribute("task-id");
    if (id) {
      this.client.subscribe(id);
      const known = this.client.get(id);
      if (known) this.render(known);
    }
  }

  disconnectedCallback() {
    this.client.removeEventListener("task", this.onTask);
  }

  render(task) {
    const percent = task.progress && task.progress.percent;
    if (percent === null || percent === undefined) {
      this.bar.removeAttribute("value");
    } else {
      this.bar.value = percent;
    }
    this.bar.setAttribute("aria-valuetext", `${task.state}${percent != null ? `, ${percent}%` : ""}`);
    this.label.textContent = `${task.label || task.name}: ${task.state}${percent != null ? ` ${percent}%` : ""}`;
  }
}

if (!customElements.get("task-progress")) customElements.define("task-progress", TaskProgressElement);
