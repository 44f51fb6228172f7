// Loaded by the base template on every page: the connection indicator and the toasts
// that tell the owner when any of their tasks succeeds, fails or is cancelled (and a
// browser notification when the tab is hidden and the user has allowed them).
import { downloadLink, tasklight } from "./tasklight.js";

const client = tasklight();
const LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };
const TITLES = {
  connecting: "Connecting to the server for live updates.",
  live: "Connected: progress shown here is live.",
  reconnecting: "Connection lost: what you see may be out of date. Reconnecting…",
  offline: "Offline: live updates are paused.",
};
const MAX_TOASTS = 5;

function showConnection(state) {
  const el = document.getElementById("tl-connection");
  if (!el) return;
  el.textContent = LABELS[state] || state;
  el.title = TITLES[state] || "";
  el.className = `tl-conn tl-conn-${state}`;
  el.dataset.state = state;
  document.documentElement.dataset.connection = state;
}

function resultSummary(result) {
  if (result === null || result === undefined) return "";
  if (typeof result !== "object") return String(result);
  return Object.entries(result)
    .filter(([key]) => key !== "download_url")
    .map(([key, value]) => `${key}: ${typeof value === "number" ? value.toLocaleString("en") : JSON.stringify(value)}`)
    .join(", ")
    .slice(0, 200);
}

function describe(task) {
  const name = task.label || task.name;
  if (task.state === "succeeded") return `${name} succeeded.`;
  if (task.state === "failed") return `${name} failed: ${(task.error && task.error.message) || "unknown error"}`;
  return `${name} was cancelled.`;
}

function toast(task) {
  let box = document.getElementById("tl-toasts");
  if (!box) {
    // A page without its own container (a host's page): add one.
    box = document.createElement("div");
    box.id = "tl-toasts";
    box.className = "tl-toasts";
    box.setAttribute("aria-live", "polite");
    box.setAttribute("aria-label", "Notifications");
    document.body.append(box);
  }
  const item = document.createElement("div");
  item.className = `tl-toast tl-toast-${task.state}`;
  item.setAttribute("role", task.state === "failed" ? "alert" : "status");
  item.dataset.taskId = task.id;
  item.dataset.state = task.state;
  const text = document.createElement("p");
  text.className = "tl-toast-text";
  text.textContent = describe(task);
  item.append(text);
  if (task.state === "succeeded") {
    const summary = resultSummary(task.result);
    if (summary) {
      const result = document.createElement("p");
      result.className = "tl-toast-result";
      result.textContent = summary;
      item.append(result);
    }
    const link = task.result ? downloadLink(task.result.download_url, "tl-toast-download") : null;
    if (link) item.append(link);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "tl-toast-close";
  close.setAttribute("aria-label", "Dismiss notification");
  close.textContent = "×";
  close.addEventListener("click", () => item.remove());
  item.addEventListener("keydown", (event) => { if (event.key === "Escape") item.remove(); });
  item.append(close);
  box.append(item);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  if (document.visibilityState === "hidden" && "Notification" in window && Notification.permission === "granted") {
    try {
      const note = new Notification(`Tasklight: ${task.label || task.name}`, { body: text.textContent, tag: task.id });
      note.onclick = () => { window.focus(); note.close(); };
    } catch { /* not allowed in this context */ }
  }
}

// Offer browser notifications once, from a user gesture, as browsers require.
function offerNotifications() {
  const button = document.getElementById("tl-notify");
  if (!button || !("Notification" in window) || Notification.permission !== "default") return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    try { await Notification.requestPermission(); } catch { /* ignored */ }
    button.hidden = Notification.permission === "default" ? false : true;
  });
}

showConnection(client.state);
client.addEventListener("connection", (event) => showConnection(event.detail.state));
client.addEventListener("finished", (event) => {
  // Only tasks this page saw unfinished: a snapshot of old finished tasks is not news.
  if (event.detail.seenRunning) toast(event.detail.task);
});
offerNotifications();
