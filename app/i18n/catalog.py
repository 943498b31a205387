"""The request's catalogue, looked up once a request, and gettext / ngettext over it.

Flask-Babel looks the catalogue up again on every call (about 20 µs); a page like the spec
list makes hundreds of calls (its rows, their relative times), so the templates' ``_()`` and
the hot filters of app/ui.py and the display labels (app/i18n/labels.py,
app/audit/labels.py), drawn once per row, use these instead. Same results as ``flask_babel.gettext``:
the request's language, English outside a request.
"""
from __future__ import annotations

from flask import has_request_context, request
from flask_babel import get_translations


def translations():
    if not has_request_context():
        return get_translations()
    found = getattr(request, "_imagebuilder_translations", None)
    if found is None:
        found = request._imagebuilder_translations = get_translations()
    return found


def gettext(string: str, **variables) -> str:
    text = translations().ugettext(string)
    return text % variables if variables else text


def pgettext(context: str, string: str, **variables) -> str:
    text = translations().upgettext(context, string)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables) -> str:
    variables.setdefault("num", num)
    return translations().ungettext(singular, plural, num) % variables
