// The dashboard: a launch form built from /api/launchable/ and the owner's tasks, live.
import { api, downloadLink, formatElapsed, formatEta, isTerminal, percentOf, tasklight } from "./tasklight/tasklight.js";

const client = tasklight();
const list = document.getElementById("task-list");
const empty = document.getElementById("empty");
const form = document.getElementById("launch-form");
const select = document.getElementById("launch-name");
const paramsBox = document.getElementById("launch-params");
const formError = document.getElementById("launch-error");
const launchButton = document.getElementById("launch-button");
let launchables = [];

// ---- the launch form, from each task's JSON Schema ---------------------------------------
function field(key, schema, required) {
  const id = `param-${key}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = schema.title || key;
  let input;
  if (Array.isArray(schema.enum)) {
    input = document.createElement("select");
    for (const value of schema.enum) input.append(new Option(String(value), JSON.stringify(value)));
    if (schema.default !== undefined) input.value = JSON.stringify(schema.default);
    input.dataset.type = "enum";
  } else if (schema.type === "boolean") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(schema.default);
    input.dataset.type = "boolean";
  } else {
    input = document.createElement("input");
    const numeric = schema.type === "integer" || schema.type === "number";
    input.type = numeric ? "number" : "text";
    if (schema.type === "integer") input.step = "1";
    if (schema.type === "number") input.step = "any";
    if (schema.minimum !== undefined) input.min = String(schema.minimum);
    if (schema.maximum !== undefined) input.max = String(schema.maximum);
    if (schema.maxLength !== undefined) input.maxLength = schema.maxLength;
    if (schema.default !== undefined) input.value = String(schema.default);
    input.dataset.type = schema.type || "string";
  }
  input.id = id;
  input.name = key;
  input.required = required;
  if (schema.description) input.title = schema.description;
  const wrap = document.createElement("span");
  wrap.className = "param";
  wrap.append(label, input);
  return wrap;
}

function paramInputs(spec) {
  const schema = (spec && spec.params) || {};
  const required = new Set(schema.required || []);
  paramsBox.replaceChildren(
    ...Object.entries(schema.properties || {}).map(([key, s]) => field(key, s, required.has(key))),
  );
}

function readParams() {
  const params = {};
  for (const input of paramsBox.querySelectorAll("input, select")) {
    const type = input.dataset.type;
    if (type === "boolean") { params[input.name] = input.checked; continue; }
    if (type === "enum") { params[input.name] = JSON.parse(input.value); continue; }
    if (input.value === "") continue;   // the server fills in the default
    params[input.name] = type === "integer" ? parseInt(input.value, 10)
      : type === "number" ? parseFloat(input.value) : input.value;
  }
  return params;
}

async function loadLaunchables() {
  const data = await api("launchable/");
  launchables = data.tasks;
  select.replaceChildren(...launchables.map((t) => new Option(t.label, t.name)));
  paramInputs(launchables[0]);
  launchButton.disabled = launchables.length === 0;
}

select.addEventListener("change", () => paramInputs(launchables.find((t) => t.name === select.value)));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  formError.textContent = "";
  if (!form.reportValidity()) return;
  launchButton.disabled = true;   // one click, one task
  try {
    await client.launch(select.value, readParams());
  } catch (error) {
    formError.textContent = error.code === "invalid_params" ? `Invalid parameters: ${error.message}` : error.message;
  } finally {
    launchButton.disabled = false;
  }
});

// ---- the task list -------------------------------------------------------------------
const STATE_TEXT = {
  queued: "queued", running: "running", retrying: "retrying",
  succeeded: "succeeded", failed: "failed", cancelled: "cancelled",
};

function row(task) {
  let li = document.getElementById(`task-${task.id}`);
  if (li) return li;
  li = document.createElement("li");
  li.id = `task-${task.id}`;
  li.className = "task";
  li.dataset.taskId = task.id;
  li.innerHTML = `
    <div class="task-head">
      <span class="task-label"></span>
      <span class="badge"></span>
    </div>
    <div class="bar-wrap">
      <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div class="bar-fill"></div></div>
      <span class="percent" aria-hidden="true"></span>
    </div>
    <div class="task-meta"><span class="message"></span><span class="eta"></span><span class="elapsed"></span></div>
    <div class="task-actions"><button type="button" class="cancel">Cancel</button><span class="outcome"></span></div>`;
  const labelId = `task-${task.id}-label`;
  li.querySelector(".task-label").id = labelId;
  li.setAttribute("aria-labelledby", labelId);
  li.querySelector(".cancel").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    button.textContent = "Cancelling…";
    try {
      await client.cancel(task.id);
    } catch (error) {
      if (error.status !== 409) {
        button.disabled = false;
        button.textContent = "Cancel";
        li.querySelector(".outcome").textContent = `Could not cancel: ${error.message}`;
      }
    }
  });
  insertSorted(li, task);
  return li;
}

function insertSorted(li, task) {
  // Newest first, by created_at (ISO 8601 in UTC, so strings compare as times).
  li.dataset.created = task.created_at || "";
  for (const other of list.children) {
    if (other.dataset.created < li.dataset.created) { list.insertBefore(li, other); return; }
  }
  list.append(li);
}

function render(task) {
  const li = row(task);
  const name = task.label || task.name;
  const running = task.state === "running";
  const cancelling = task.cancel_requested && !isTerminal(task);
  li.dataset.state = task.state;
  li.dataset.cancelRequested = String(Boolean(task.cancel_requested));
  li.querySelector(".task-label").textContent = name;

  const badge = li.querySelector(".badge");
  badge.textContent = cancelling ? "cancelling" : STATE_TEXT[task.state] || task.state;
  badge.className = `badge badge-${task.state}`;

  const bar = li.querySelector(".bar");
  const fill = li.querySelector(".bar-fill");
  const percentText = li.querySelector(".percent");
  const percent = percentOf(task);
  const indeterminate = percent === null && running;
  bar.classList.toggle("indeterminate", indeterminate);
  bar.setAttribute("aria-label", `${name} progress`);
  bar.dataset.indeterminate = String(indeterminate);
  if (percent === null) {
    // No amount of work known: no aria-valuenow, as ARIA asks for indeterminate bars.
    bar.removeAttribute("aria-valuenow");
    const done = task.state === "succeeded";
    bar.setAttribute("aria-valuetext", indeterminate ? "in progress, amount of work unknown" : task.state);
    fill.style.width = done ? "100%" : "0%";
    percentText.textContent = indeterminate ? "…" : done ? "100%" : "";
  } else {
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuetext", `${percent}%${isTerminal(task) ? `, ${task.state}` : ""}`);
    fill.style.width = `${percent}%`;
    percentText.textContent = `${percent}%`;
  }

  li.querySelector(".message").textContent = (task.progress && task.progress.message) || "";
  li.querySelector(".eta").textContent = running ? formatEta(client.etaNow(task)) : "";
  li.querySelector(".elapsed").textContent = task.started_at
    ? `${isTerminal(task) ? "took" : "running for"} ${formatElapsed(task)}`
    : task.state === "queued" ? "waiting for a worker" : "";

  const cancel = li.querySelector(".cancel");
  cancel.hidden = isTerminal(task);
  if (cancelling) {
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
  }
  cancel.setAttribute("aria-label", `${cancelling ? "Cancelling" : "Cancel"} ${name}`);

  const outcome = li.querySelector(".outcome");
  // Live only while the task is unfinished: a finished task's outcome is announced by its notification.
  outcome.setAttribute("aria-live", isTerminal(task) ? "off" : "polite");
  // A running task can carry an error without failing, e.g. CannotStop when its pool cannot
  // stop it after a cancel (docs/cancellation.md): show it as a warning until the task ends.
  const warning = running && task.error ? task.error.message || task.error.type || "" : "";
  if (warning) {
    const text = `Warning: ${warning}`;
    if (outcome.textContent !== text) outcome.textContent = text;   // unchanged text is not re-announced
    outcome.classList.add("outcome-warning");
  } else if (outcome.classList.contains("outcome-warning")) {
    outcome.classList.remove("outcome-warning");
    outcome.replaceChildren();
  }
  if (isTerminal(task)) {
    outcome.replaceChildren();
    const link = task.state === "succeeded" && task.result ? downloadLink(task.result.download_url, "download") : null;
    if (link) {
      outcome.append(link);
    } else if (task.state === "failed" && task.error) {
      outcome.textContent = `${task.error.type}: ${task.error.message}`;
    }
  }
  empty.hidden = list.children.length > 0;
}

client.addEventListener("task", (event) => render(event.detail.task));
for (const task of client.tasks.values()) render(task);
// A first paint over HTTP, in case the socket is slow or down; the socket then keeps it live.
client.refresh().catch(() => {});
// Elapsed time and ETA move on between updates.
setInterval(() => {
  for (const task of client.tasks.values()) {
    if (!isTerminal(task)) render(task);
  }
}, 1000);
loadLaunchables().catch((error) => { formError.textContent = `Could not load tasks: ${error.message}`; });
