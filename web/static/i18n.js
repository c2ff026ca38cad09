// The join page's words, in the person's language. Each language is one catalogue,
// web/static/i18n/<code>.json, with the same keys (docs/operations.md: adding one).
// Texts are set with say(), which remembers the key on the element, so the language
// switch re-renders every text already shown, times included, in the new language.
"use strict";

// Each language under its own name, as its speakers look for it in the switch.
const LANGUAGES = { en: "English", "zh-CN": "简体中文", es: "Español" };
const LANGUAGE_KEY = "visitbridge-language";
let language = "en";
let catalogue = {};

// The first of the browser's languages we have (exactly, or by its main language:
// es-MX -> es), else English.
function pickLanguage(preferred) {
  const codes = Object.keys(LANGUAGES);
  for (const tag of preferred) {
    const exact = codes.find((c) => c.toLowerCase() === String(tag).toLowerCase());
    if (exact) return exact;
    const main = codes.find((c) => c.split("-")[0] === String(tag).toLowerCase().split("-")[0]);
    if (main) return main;
  }
  return "en";
}

function storedLanguage() {
  try {
    const code = localStorage.getItem(LANGUAGE_KEY);
    return code in LANGUAGES ? code : null;
  } catch {
    return null;  // storage blocked: follow the browser
  }
}

// A parameter's words: a nested text ({ key, params }), a list of them (joined the
// language's way), a time or day ({ time } / { day }, unix seconds, in the viewer's
// time zone), or plain text (a name).
function paramText(value) {
  if (Array.isArray(value)) {
    return new Intl.ListFormat(language, { type: "unit" }).format(value.map(paramText));
  }
  if (value && typeof value === "object") {
    if ("key" in value) return t(value.key, value.params);
    if ("time" in value) {
      return new Intl.DateTimeFormat(language, { hour: "2-digit", minute: "2-digit" })
        .format(new Date(value.time * 1000));
    }
    if ("day" in value) {
      return new Intl.DateTimeFormat(language, { weekday: "long", day: "numeric", month: "long" })
        .format(new Date(value.day * 1000));
    }
  }
  return String(value);
}

// The text of a key, with {name} placeholders filled in. A text with plural forms
// ({ one, other, ... }) is chosen by params.count.
function t(key, params = {}) {
  let text = catalogue[key];
  if (text === undefined) return key;
  if (typeof text === "object") {
    text = text[new Intl.PluralRules(language).select(params.count)] ?? text.other;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? paramText(params[name]) : whole));
}

function hasText(key) {
  return key in catalogue;
}

// Show a key's text on an element (its text, or an attribute such as aria-label) and
// remember it there for a change of language.
function say(el, key, params = {}, attribute = null) {
  const name = attribute ? `i18n-${attribute}` : "i18n";
  el.setAttribute(`data-${name}`, key);
  el.setAttribute(`data-${name}-params`, JSON.stringify(params));
  if (attribute) el.setAttribute(attribute, t(key, params));
  else el.textContent = t(key, params);
}

// Shows a text not from the catalogue (a server's words for an unknown code): it stays
// as it is when the language changes.
function sayRaw(el, text) {
  el.removeAttribute("data-i18n");
  el.removeAttribute("data-i18n-params");
  el.textContent = text;
}

function renderTexts() {
  document.documentElement.lang = language;
  for (const el of document.querySelectorAll("*")) {
    for (const attr of [...el.attributes]) {
      const match = /^data-i18n(?:-([a-z-]+?))?$/.exec(attr.name);
      if (!match || (match[1] || "").endsWith("params")) continue;
      const params = JSON.parse(el.getAttribute(`${attr.name}-params`) || "{}");
      if (match[1]) el.setAttribute(match[1], t(attr.value, params));
      else el.textContent = t(attr.value, params);
    }
  }
}

async function useLanguage(code) {
  const response = await fetch(`/static/i18n/${code}.json`);
  if (!response.ok) throw new Error(`no catalogue for ${code}`);
  catalogue = await response.json();
  language = code;
  renderTexts();
}

// The switch: every language under its own name; a choice is remembered on this device.
function languageSwitch(select) {
  for (const [code, name] of Object.entries(LANGUAGES)) {
    const option = new Option(name, code, false, code === language);
    option.lang = code;
    select.append(option);
  }
  select.addEventListener("change", () => {
    try { localStorage.setItem(LANGUAGE_KEY, select.value); } catch { /* not remembered */ }
    useLanguage(select.value).catch((err) => console.error(err));
  });
}

// Resolves once the page speaks its language (the remembered one, else the browser's).
const languageReady = (async () => {
  const code = storedLanguage() || pickLanguage(navigator.languages || [navigator.language]);
  await useLanguage(code).catch(() => useLanguage("en"));
  const select = document.getElementById("language");
  if (select) languageSwitch(select);
})();
