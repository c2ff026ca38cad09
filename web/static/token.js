// Shared by every page: the token arrives in the URL fragment (browsers never send a
// fragment to a server). It is read once and at once removed from the address bar and
// from this history entry, so the next user of a shared kiosk cannot reopen the link
// with Back or by reading the address; the page keeps it in memory for reconnects.
"use strict";

const token = (() => {
  const params = new URLSearchParams(location.hash.slice(1));
  const value = params.get("token");
  if (params.has("token")) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return value;
})();

// A page brought back by Back from the back-forward cache still holds its token in
// memory: load it afresh instead, which (the fragment being gone) asks for a link.
addEventListener("pageshow", (event) => { if (event.persisted) location.reload(); });
