// Loaded by the base template on every page: the connection indicator and the toasts
// that tell the owner when any of their tasks succeeds, fails or is cancelled.
import { tasklight } from "./tasklight.js";

const client = tasklight();
const LABELS = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", offline: "offline" };

function showConnection(state) {
  const el = document.getElementById("tl-connection");
  if (!el) return;
  el.textContent = LABELS[state] || state;
  el.className = `conn conn-${state}`;
  el.dataset.state = state;
}

function toast(task) {
  const box = document.getElementById("tl-toasts");
  if (!box) return;
  const item = document.createElement("div");
  item.className = `toast toast-${task.state}`;
  item.setAttribute("role", task.state === "failed" ? "alert" : "status");
  item.dataset.taskId = task.id;
  const text = document.createElement("p");
  const name = task.label || task.name;
  if (task.state === "succeeded") text.textContent = `${name} succeeded.`;
  else if (task.state === "failed") text.textContent = `${name} failed: ${(task.error && task.error.message) || "unknown error"}`;
  else text.textContent = `${name} was cancelled.`;
  item.append(text);
  if (task.state === "succeeded" && task.result) {
    if (task.result.download_url) {
      const link = document.createElement("a");
      link.href = task.result.download_url;
      link.textContent = "Download";
      link.className = "toast-download";
      item.append(link);
    } else {
      const result = document.createElement("code");
      result.textContent = JSON.stringify(task.result).slice(0, 200);
      item.append(result);
    }
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss notification");
  close.textContent = "×";
  close.addEventListener("click", () => item.remove());
  item.append(close);
  box.append(item);
  if (document.visibilityState === "hidden" && "Notification" in window && Notification.permission === "granted") {
    try { new Notification(`Tasklight: ${name}`, { body: text.textContent }); } catch { /* not allowed here */ }
  }
}

showConnection(client.state);
client.addEventListener("connection", (event) => showConnection(event.detail.state));
client.addEventListener("finished", (event) => {
  // Only tasks this page saw unfinished: a snapshot of old finished tasks is not news.
  if (event.detail.seenRunning) toast(event.detail.task);
});
