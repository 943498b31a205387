"""Ids, names and numbers from URLs and query strings, bounded before they reach the database.

Every id in a URL goes through ``IdConverter`` (registered as the ``int`` converter, so
``<int:job_id>`` is bounded everywhere), every name through ``NameConverter`` (the
default converter, so ``<name>`` is) and every integer query parameter (page,
per_page, offset) through ``query_int``. PostgreSQL's ``integer`` is the narrowest
column type the ids and log offsets live in, so a larger number can never match a
row: it is answered 404 (an id) or 422 (a parameter) with the reason, never sent to the
database, where it would overflow (a 500).
"""
from __future__ import annotations

import re

from flask import request
from flask_babel import gettext as _, lazy_gettext as _l
from werkzeug.exceptions import NotFound, UnprocessableEntity
from werkzeug.routing import IntegerConverter, UnicodeConverter

from .models import MAX_INTEGER

_MAX_DIGITS = 18
MAX_NAME_LENGTH = 255
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_INTEGER_RE = re.compile(r"-?[0-9]+")


class NoSuchRow(NotFound):
    """An id or name in the URL that no row can have: answered 404 as it is, before
    the sign-in guards (there is nothing to protect) and before any query."""


class IdConverter(IntegerConverter):
    """A row id: digits only. One beyond any possible row is a 404 that says so."""

    regex = r"[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value) if len(value) <= _MAX_DIGITS else MAX_INTEGER + 1
        if number > MAX_INTEGER:
            # Lazy: a URL is matched before the request's language is chosen.
            raise NoSuchRow(_l("No such id: %(value)s is larger than any id (%(max)d).", value=value,
                               max=MAX_INTEGER))
        return number


class NameConverter(UnicodeConverter):
    """A spec's or a credential's name: none is longer than MAX_NAME_LENGTH or holds a
    control character (PostgreSQL would refuse a NUL in the query outright)."""

    def to_python(self, value: str) -> str:
        if len(value) > MAX_NAME_LENGTH or _CONTROL_RE.search(value):
            raise NoSuchRow(_l("No such name: names have at most %(max)d characters and no control characters.",
                               max=MAX_NAME_LENGTH))
        return value


class InvalidParameter(UnprocessableEntity):
    """A query parameter out of its range or of the wrong type: 422 naming it and why."""

    def __init__(self, name: str, message: str):
        super().__init__(_("Query parameter %(name)s: %(reason)s", name=repr(name), reason=message))
        self.field, self.message = name, message


def query_int(name: str, default: int, *, minimum: int, maximum: int = MAX_INTEGER, clamp: bool = False) -> int:
    """The integer query parameter ``name`` (``default`` when absent or empty).

    Below ``minimum``, not an integer, or above ``maximum`` -> InvalidParameter; with
    ``clamp`` a value above ``maximum`` is taken as ``maximum`` (a page size asked too big).
    """
    text = (request.args.get(name) or "").strip()
    if not text:
        return default
    if not _INTEGER_RE.fullmatch(text):
        raise InvalidParameter(name, _("Must be an integer."))
    # More digits than any bound has: compared by sign, never handed to int() (which
    # refuses a few thousand digits) or to the database.
    value = int(text) if len(text) <= _MAX_DIGITS else (-1 if text.startswith("-") else 1) * (MAX_INTEGER + 1)
    if value < minimum:
        raise InvalidParameter(name, _("Must be at least %(minimum)d.", minimum=minimum))
    if value > maximum:
        if clamp:
            return maximum
        raise InvalidParameter(name, _("Must be at most %(maximum)d.", maximum=maximum))
    return value


def register_params(app) -> None:
    """Before any blueprint: a rule binds its converters when it is added."""
    app.url_map.converters["int"] = IdConverter
    app.url_map.converters["default"] = app.url_map.converters["string"] = NameConverter
