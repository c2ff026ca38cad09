"""The join page's message catalogues agree: the same keys in every language, every key
the page uses is there, every code a family can be shown has its words, and no
translation drops or invents a placeholder."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CATALOGUES = WEB / "static" / "i18n"
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# A key as the page writes it: a quoted "namespace.name" (t("..."), say(el, "..."),
# { key: "..." }, or a key passed on), or a data-i18n attribute of the HTML.
KEY_IN_JS = re.compile(r"""["']([a-z_]+\.[a-z_]+)["']""")
KEY_IN_HTML = re.compile(r'data-i18n(?:-[a-z-]+)?="([^"]+)"')
# Keys made from a code the server sends: `refusal.${code}`, `end.${cause}`, `role.${role}`.
DYNAMIC = re.compile(r"`([a-z]+)\.\$\{")
ROLES = ("inmate", "family", "attorney")
# Said by the page itself, not sent by the server.
PAGE_CODES = {"no_token", "camera", "connection_lost"}


def catalogue(code: str) -> dict[str, str | dict[str, str]]:
    return json.loads((CATALOGUES / f"{code}.json").read_text(encoding="utf-8"))


def languages() -> list[str]:
    return sorted(path.stem for path in CATALOGUES.glob("*.json"))


def join_page_sources() -> list[str]:
    """join.html and the head and scripts it loads."""
    html = (WEB / "join.html").read_text(encoding="utf-8")
    head = (WEB / "head.html").read_text(encoding="utf-8")
    scripts = re.findall(r'<script src="/static/([^"]+)"', head + html)
    return [html] + [(WEB / "static" / name).read_text(encoding="utf-8") for name in scripts]


def used_keys() -> tuple[set[str], set[str]]:
    """(keys written out, prefixes of keys made from a server's code)."""
    keys: set[str] = set()
    prefixes: set[str] = set()
    for source in join_page_sources():
        keys |= set(KEY_IN_JS.findall(source)) | set(KEY_IN_HTML.findall(source))
        prefixes |= set(DYNAMIC.findall(source))
    return keys, prefixes


def protocol_codes(heading: str) -> set[str]:
    """The codes in the first column of the table under a heading of docs/protocol.md,
    without the ones only the officer console can receive."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    rows = re.findall(r"^\| (`.+?`) \|(.*)$", section.split("\n\n|", 1)[1].split("\n\n", 1)[0],
                      re.MULTILINE)
    return {code for first, rest in rows if "`monitor` only" not in rest
            for code in re.findall(r"`([a-z_]+)`", first)}


def forms(text: str | dict[str, str]) -> list[str]:
    return list(text.values()) if isinstance(text, dict) else [text]


def test_every_language_has_the_same_keys() -> None:
    english = catalogue("en")
    assert {"en", "es", "zh-CN"} <= set(languages())
    for code in languages():
        keys = set(catalogue(code))
        assert keys == set(english), (code, sorted(keys ^ set(english)))


def test_every_key_the_page_uses_is_in_english_and_every_entry_is_used() -> None:
    english = catalogue("en")
    keys, prefixes = used_keys()
    assert keys, "no keys found: the pattern no longer matches the page"
    assert sorted(keys - set(english)) == []
    unused = {key for key in english if key not in keys and key.split(".")[0] not in prefixes}
    assert sorted(unused) == []


def test_every_code_a_family_can_be_shown_has_its_words() -> None:
    english = catalogue("en")
    refusals = protocol_codes("## Errors and close codes") - {"left", "ended"}
    causes = protocol_codes("A visit ends with one of these causes")
    assert {"expired", "too_early", "server_full"} <= refusals and "slot_ended" in causes
    assert sorted(f"refusal.{c}" for c in refusals | PAGE_CODES
                  if f"refusal.{c}" not in english) == []
    assert sorted(f"end.{c}" for c in causes if f"end.{c}" not in english) == []
    assert all(f"role.{role}" in english for role in ROLES)


def test_translations_keep_every_placeholder_and_plural_form() -> None:
    english = catalogue("en")
    for code in languages():
        for key, text in catalogue(code).items():
            wanted = {name for form in forms(english[key]) for name in PLACEHOLDER.findall(form)}
            assert isinstance(text, str) == isinstance(english[key], str), (code, key)
            if isinstance(text, dict):
                assert "other" in text, (code, key)
                assert set(text) <= {"zero", "one", "two", "few", "many", "other"}, (code, key)
            for form in forms(text):
                assert form.strip(), (code, key)
                assert set(PLACEHOLDER.findall(form)) == wanted, (code, key, form)
