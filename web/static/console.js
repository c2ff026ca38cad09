// Shared by the staff consoles (officer, compliance): the bearer token from the URL
// fragment (never sent in a URL), status lines, action buttons, and the JSON API helper.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);

function status(text) { $("status").textContent = text; }
function alertUser(text) { $("alert").textContent = text; $("alert").hidden = !text; }

// label: the accessible name, where the visible text alone is ambiguous in a table.
function button(text, onClick, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.message || data.error || `HTTP ${res.status}`);
  return data;
}
