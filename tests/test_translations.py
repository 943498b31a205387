"""The Traditional Chinese catalogue is complete and compiles, and each request gets the
language it asks for (app/i18n)."""
import io
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from app.i18n import locale_for_accept_language

REPO = Path(__file__).resolve().parent.parent
CATALOGUE = REPO / "app/translations/zh_Hant/LC_MESSAGES/messages.po"


def _catalogue():
    with CATALOGUE.open("rb") as handle:
        return read_po(handle, locale="zh_Hant")


def _messages(catalog):
    return [message for message in catalog if message.id]


def test_every_message_has_a_translation_that_is_not_empty_or_fuzzy():
    catalog = _catalogue()
    untranslated = []
    for message in _messages(catalog):
        strings = message.string if isinstance(message.string, (list, tuple)) else [message.string]
        if message.fuzzy or not all(s and s.strip() for s in strings):
            untranslated.append(message.id)
    assert _messages(catalog), "the catalogue holds no messages"
    assert untranslated == []


def test_every_message_id_of_the_code_is_in_the_catalogue(tmp_path):
    # What `scripts/translations.sh update` extracts: a marked string missing from the
    # catalogue would be shown in English on a Chinese page.
    pot = tmp_path / "messages.pot"
    subprocess.run([str(Path(sys.executable).parent / "pybabel"), "-q", "extract", "-F", "babel.cfg",
                    "-k", "lazy_gettext", "-k", "_l", "-o", str(pot), "."], cwd=REPO, check=True)
    with pot.open("rb") as handle:
        extracted = {message.id if isinstance(message.id, str) else message.id[0]
                     for message in read_po(handle) if message.id}
    known = {message.id if isinstance(message.id, str) else message.id[0] for message in _messages(_catalogue())}
    assert sorted(extracted - known) == []


def test_the_catalogue_compiles_and_its_placeholders_match():
    catalog = _catalogue()
    problems = [(message.id, [str(error) for error in errors]) for message, errors in catalog.check()]
    assert problems == []
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    assert len(compiled.getvalue()) > 100


@pytest.mark.parametrize("header, expected", [
    ("zh-TW,zh;q=0.9,en;q=0.8", "zh_Hant"),
    ("zh-Hant", "zh_Hant"),
    ("zh-HK", "zh_Hant"),
    ("zh", "zh_Hant"),
    ("ZH-tw", "zh_Hant"),
    ("zh-Hant-TW", "zh_Hant"),
    ("en-US,en;q=0.9", "en"),
    ("en;q=0.9,zh-TW;q=0.8", "en"),
    ("en;q=0.5,zh-TW", "zh_Hant"),
    ("fr-FR,zh-TW;q=0.5", "zh_Hant"),
    ("zh-CN", "en"),
    ("zh-TW;q=0", "en"),
    ("zh-TW;q=abc", "en"),
    ("de", "en"),
    ("", "en"),
    (None, "en"),
    (";;,,=", "en"),
])
def test_accept_language_picks_traditional_chinese_for_its_tags(header, expected):
    assert locale_for_accept_language(header) == expected


def test_a_zh_tw_browser_gets_the_sign_in_page_in_chinese_and_html_lang(client):
    page = client.get("/login", headers={"Accept-Language": "zh-TW,zh;q=0.9"}).get_data(as_text=True)
    assert '<html lang="zh-Hant">' in page
    english = client.get("/login", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert '<html lang="en">' in english


def test_the_switcher_sets_a_cookie_that_wins_over_the_browser_and_goes_back(client):
    answer = client.post("/language", data={"lang": "zh_Hant", "next": "/login?x=1"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/login?x=1"
    assert "lang=zh_Hant" in answer.headers["Set-Cookie"] and "HttpOnly" in answer.headers["Set-Cookie"]
    page = client.get("/login", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert '<html lang="zh-Hant">' in page
    client.post("/language", data={"lang": "en", "next": "/login"})
    assert '<html lang="en">' in client.get("/login", headers={"Accept-Language": "zh-TW"}).get_data(as_text=True)


@pytest.mark.parametrize("form", [
    {"lang": "xx", "next": "/login"},
    {"lang": "zh_Hant", "next": "https://evil.example/"},
    {"lang": "zh_Hant", "next": "//evil.example/"},
    {},
])
def test_the_switcher_refuses_unknown_languages_and_foreign_targets(client, form):
    answer = client.post("/language", data=form)
    assert answer.status_code == 303
    assert answer.headers["Location"] in ("/login", "/")
    if form.get("lang") != "zh_Hant":
        assert "Set-Cookie" not in answer.headers


def test_the_api_ignores_the_cookie_and_follows_accept_language(client, api):
    client.set_cookie("lang", "zh_Hant")
    answer = api.get("/api/v1/specs/nope")
    assert answer.status_code == 404
    assert answer.get_json() == {"error": "No spec named 'nope'."}
    chinese = api.get("/api/v1/specs/nope", headers={"Accept-Language": "zh-TW"})
    assert chinese.status_code == 404
    assert chinese.get_json() == {"error": "沒有名稱為 'nope' 的 spec。"}
