// The dashboard: a launch form built from /api/launchable/ and the owner's tasks, live.
import { api, formatElapsed, formatEta, isTerminal, tasklight } from "./tasklight.js";

const client = tasklight();
const list = document.getElementById("task-list");
const empty = document.getElementById("empty");
const form = document.getElementById("launch-form");
const select = document.getElementById("launch-name");
const paramsBox = document.getElementById("launch-params");
const formError = document.getElementById("launch-error");
let launchables = [];

function paramInputs(spec) {
  paramsBox.replaceChildren();
  const props = (spec && spec.params && spec.params.properties) || {};
  for (const [key, schema] of Object.entries(props)) {
    const id = `param-${key}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = schema.title || key;
    const input = document.createElement("input");
    input.id = id;
    input.name = key;
    input.type = schema.type === "integer" || schema.type === "number" ? "number" : "text";
    if (schema.type === "integer") input.step = "1";
    if (schema.type === "number") input.step = "any";
    if (schema.minimum !== undefined) input.min = schema.minimum;
    if (schema.maximum !== undefined) input.max = schema.maximum;
    if (schema.default !== undefined) input.value = schema.default;
    input.dataset.type = schema.type;
    paramsBox.append(label, input);
  }
}

async function loadLaunchables() {
  const data = await api("/api/launchable/");
  launchables = data.tasks;
  select.replaceChildren(...launchables.map((t) => new Option(t.label, t.name)));
  paramInputs(launchables[0]);
}

select.addEventListener("change", () => paramInputs(launchables.find((t) => t.name === select.value)));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  formError.textContent = "";
  const params = {};
  for (const input of paramsBox.querySelectorAll("input")) {
    if (input.value === "") continue;
    params[input.name] = input.dataset.type === "integer" ? parseInt(input.value, 10)
      : input.dataset.type === "number" ? parseFloat(input.value) : input.value;
  }
  try {
    await client.launch(select.value, params);
  } catch (error) {
    formError.textContent = error.message;
  }
});

function row(task) {
  let li = document.getElementById(`task-${task.id}`);
  if (!li) {
    li = document.createElement("li");
    li.id = `task-${task.id}`;
    li.className = "task";
    li.dataset.taskId = task.id;
    li.innerHTML = `
      <div class="task-head">
        <span class="task-label"></span>
        <span class="badge"></span>
      </div>
      <div class="bar-wrap"><div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div class="bar-fill"></div></div>
        <span class="percent"></span></div>
      <div class="task-meta"><span class="message"></span><span class="eta"></span><span class="elapsed"></span></div>
      <div class="task-actions"><button type="button" class="cancel">Cancel</button><span class="outcome"></span></div>`;
    li.querySelector(".cancel").addEventListener("click", async (event) => {
      event.target.disabled = true;
      event.target.textContent = "Cancelling…";
      try { await client.cancel(task.id); } catch (error) {
        if (error.status !== 409) { event.target.disabled = false; event.target.textContent = "Cancel"; }
      }
    });
    insertSorted(li, task);
  }
  return li;
}

function insertSorted(li, task) {
  // Newest first, by created_at.
  li.dataset.created = task.created_at;
  for (const other of list.children) {
    if (other.dataset.created < task.created_at) { list.insertBefore(li, other); return; }
  }
  list.append(li);
}

function render(task) {
  const li = row(task);
  li.dataset.state = task.state;
  li.querySelector(".task-label").textContent = task.label || task.name;
  const badge = li.querySelector(".badge");
  badge.textContent = task.cancel_requested && !isTerminal(task) ? "cancelling" : task.state;
  badge.className = `badge badge-${task.state}`;
  const bar = li.querySelector(".bar");
  const fill = li.querySelector(".bar-fill");
  const percent = task.progress ? task.progress.percent : null;
  const indeterminate = percent === null || percent === undefined;
  bar.classList.toggle("indeterminate", indeterminate && task.state === "running");
  if (indeterminate) {
    bar.removeAttribute("aria-valuenow");
    bar.setAttribute("aria-valuetext", task.state === "running" ? "in progress, amount unknown" : task.state);
    fill.style.width = task.state === "succeeded" ? "100%" : "0%";
    li.querySelector(".percent").textContent = "";
  } else {
    bar.setAttribute("aria-valuenow", String(percent));
    bar.setAttribute("aria-valuetext", `${percent}%`);
    fill.style.width = `${percent}%`;
    li.querySelector(".percent").textContent = `${percent}%`;
  }
  bar.setAttribute("aria-label", `${task.label || task.name} progress`);
  li.querySelector(".message").textContent = (task.progress && task.progress.message) || "";
  li.querySelector(".eta").textContent = task.state === "running" ? formatEta(task.eta_seconds) : "";
  li.querySelector(".elapsed").textContent = task.started_at ? formatElapsed(task) : "";
  const cancel = li.querySelector(".cancel");
  cancel.hidden = isTerminal(task);
  if (task.cancel_requested && !isTerminal(task)) {
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
  }
  const outcome = li.querySelector(".outcome");
  outcome.replaceChildren();
  if (task.state === "succeeded" && task.result && task.result.download_url) {
    const a = document.createElement("a");
    a.href = task.result.download_url;
    a.textContent = "Download";
    outcome.append(a);
  } else if (task.state === "failed" && task.error) {
    outcome.textContent = `${task.error.type}: ${task.error.message}`;
  }
  empty.hidden = list.children.length > 0;
}

client.addEventListener("task", (event) => render(event.detail.task));
for (const task of client.tasks.values()) render(task);
setInterval(() => {
  for (const task of client.tasks.values()) {
    if (!isTerminal(task)) render(task);
  }
}, 1000);
loadLaunchables().catch((error) => { formError.textContent = `Could not load tasks: ${error.message}`; });
