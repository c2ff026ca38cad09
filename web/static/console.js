// Shared by the staff consoles (officer, compliance): status lines, action buttons, and
// the JSON API helper, which sends the bearer token (token.js) in a header, never a URL.
"use strict";

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
