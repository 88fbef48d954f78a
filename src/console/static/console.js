// The console's only script: forms marked data-api send their fields as JSON to the
// API with the session's CSRF token, and show the answer. Nothing else.
"use strict";

function csrf() {
  const meta = document.querySelector('meta[name="csrf"]');
  return meta ? meta.content : "";
}

function fields(form) {
  const body = {};
  for (const input of form.querySelectorAll("input[name]")) {
    body[input.name] = input.type === "number" ? Number(input.value) : input.value;
  }
  return body;
}

function renderHits(form, hits) {
  const list = form.querySelector("[data-hits]");
  list.textContent = "";
  for (const hit of hits) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = hit.kind === "account" ? "/accounts/" + hit.target : "/transactions/" + hit.target;
    link.textContent = hit.kind + ": " + hit.label;
    item.appendChild(link);
    list.appendChild(item);
  }
  return hits.length ? hits.length + " found" : "nothing found in your scope";
}

function describe(answer) {
  if (answer.approval !== undefined) return "request " + answer.approval + " " + answer.state + ": a second person must approve it";
  if (answer.state) return answer.state + (answer.confirmation ? " — confirmation " + answer.confirmation : "");
  if (answer.status) return "status " + answer.status;
  return "done";
}

async function submit(event) {
  const form = event.currentTarget;
  event.preventDefault();
  const result = form.querySelector("[data-result]");
  const method = form.dataset.method || "POST";
  const options = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
  if (method !== "DELETE") {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(fields(form));
  }
  const response = await fetch(form.dataset.api, options);
  let answer = {};
  try { answer = await response.json(); } catch (e) { answer = {}; }
  if (!response.ok) {
    if (result) result.textContent = "refused (" + response.status + "): " + (answer.reason || answer.error || "");
    if (result) result.className = "result error";
    return;
  }
  if (form.dataset.redirect) { window.location = form.dataset.redirect; return; }
  if (form.dataset.reload !== undefined) { window.location.reload(); return; }
  if (result) {
    result.className = "result ok";
    result.textContent = form.dataset.render === "hits" ? renderHits(form, answer) : describe(answer);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-api]")) {
    form.addEventListener("submit", submit);
  }
});
