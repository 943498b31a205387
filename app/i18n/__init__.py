"""The interface's languages: English and Traditional Chinese (繁體中文).

What this package owns:

- which language a request gets (``select_locale``): pages take the ``lang`` cookie that the
  header's switcher sets, else the browser's ``Accept-Language``; the JSON API takes only
  ``Accept-Language`` (scripts see English unless they ask), so a browser's cookie never
  changes what automation reads. ``zh-TW``, ``zh-Hant``, ``zh-HK``, ``zh-MO`` and plain
  ``zh`` mean Traditional Chinese; anything else English.
- the switcher's route, ``POST /language``, which remembers the choice for a year and goes
  back to the page it came from;
- the catalogue itself: ``app/translations/zh_Hant/LC_MESSAGES/messages.po`` (the glossary
  of terms is docs/glossary-zh_Hant.md). ``scripts/translations.sh update`` extracts the
  message ids and merges them in; the set-up (scripts/python-env.sh, run by both README
  commands) compiles it to the ``.mo`` that is not committed.

Strings are marked with ``flask_babel.gettext`` / ``ngettext`` where a request is being
answered and ``lazy_gettext`` where a message is made at import time; outside a request
(workers, the CLI) they stay English.
"""
from __future__ import annotations

from flask import Blueprint, current_app, has_request_context, redirect, request, url_for
from flask_babel import Babel, get_locale, refresh

from .catalog import translations
from .labels import register_labels
from .stored import register_stored_text

LOCALES = ("en", "zh_Hant")
DEFAULT_LOCALE = "en"
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 86400
# Accept-Language tags (lower case, before any further subtag match) taken as Traditional Chinese.
_TRADITIONAL = ("zh-tw", "zh-hant", "zh-hk", "zh-mo")
_SIMPLIFIED = ("zh-cn", "zh-hans", "zh-sg")

babel = Babel()
bp = Blueprint("i18n", __name__)


def locale_for_accept_language(header: str | None) -> str:
    """The locale for an Accept-Language header: the first acceptable tag (by q) that is
    English or Chinese decides; Simplified-only tags count as English (no catalogue)."""
    for tag in _ranked_tags(header or ""):
        if tag == "zh" or tag.startswith(_TRADITIONAL):
            return "zh_Hant"
        if tag.startswith(_SIMPLIFIED) or tag == "en" or tag.startswith("en-"):
            return DEFAULT_LOCALE
    return DEFAULT_LOCALE


def _ranked_tags(header: str) -> list[str]:
    ranked = []
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        tag = tag.strip().lower()
        if tag and quality > 0:
            ranked.append((-quality, position, tag))
    return [tag for _q, _p, tag in sorted(ranked)]


def select_locale() -> str:
    if not has_request_context():
        return DEFAULT_LOCALE  # a worker or the CLI: logs and stored text stay English
    if not request.path.startswith("/api/"):
        chosen = request.cookies.get(COOKIE)
        if chosen in LOCALES:
            return chosen
    return locale_for_accept_language(request.headers.get("Accept-Language"))


def html_lang() -> str:
    """The ``<html lang>`` of a page: a BCP 47 tag."""
    return "zh-Hant" if str(get_locale()) == "zh_Hant" else "en"


@bp.post("/language")
def choose_language():
    chosen = request.form.get("lang", "")
    from ..ui import local_target  # app.ui uses this package's catalogue

    target = local_target(request.form.get("next"), url_for("specs.index"))
    response = redirect(target, code=303)
    if chosen in LOCALES:
        response.set_cookie(COOKIE, chosen, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True,
                            secure=current_app.config.get("SESSION_COOKIE_SECURE", False))
    return response


def _install_template_gettext(app) -> None:
    # The same callables Flask-Babel installs, over the per-request catalogue.
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: translations().ugettext(s),
        ngettext=lambda s, p, n: translations().ungettext(s, p, n),
        pgettext=lambda c, s: translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: translations().unpgettext(c, s, p, n),
        newstyle=True,
    )


def register_i18n(app) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", "translations")
    babel.init_app(app, locale_selector=select_locale)
    _install_template_gettext(app)
    app.register_blueprint(bp)
    register_labels(app)
    register_stored_text(app)

    @app.before_request
    def choose_again():
        # Flask-Babel keeps the locale in ``g``, which outlives a request when an app
        # context was pushed around it (the CLI, tests): each request chooses afresh.
        refresh()

    @app.context_processor
    def languages():
        return {"html_lang": html_lang(), "current_locale": str(get_locale()),
                "language_choices": (("en", "English"), ("zh_Hant", "繁體中文"))}

    @app.after_request
    def vary_on_language(response):
        response.vary.add("Accept-Language")
        response.vary.add("Cookie")
        return response
