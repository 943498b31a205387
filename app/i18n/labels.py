"""Words for stored values, chosen when a page is drawn: a job's status, a spec's field.

The database and the API keep the values themselves (``succeeded``, ``base_image``); a page
shows them in the request's language. English pages (and text made outside a request) keep
showing the value as it is stored. ``N_`` marks a message id for
extraction (``scripts/translations.sh update``) without translating it at import time.
"""
from __future__ import annotations

from flask_babel import get_locale

from .catalog import gettext, pgettext


def N_(message: str) -> str:
    return message


# One table of status words for pages and messages alike (templates/_macros.html's
# status_label macro calls status_label below).
STATUS_WORDS = {
    "queued": lambda: pgettext("job status", "queued"),
    "running": lambda: pgettext("job status", "running"),
    "succeeded": lambda: pgettext("job status", "succeeded"),
    "failed": lambda: pgettext("job status", "failed"),
    "cancelled": lambda: pgettext("job status", "cancelled"),
}

# A spec's fields (its form, its snapshot in a job) as a page names them.
SPEC_FIELD_WORDS = {
    "name": N_("Name"),
    "base_image": N_("Base image"),
    "pull_secret": N_("Image pull secret"),
    "apt": N_("APT packages"),
    "pip": N_("Pip packages"),
    "conda": N_("Conda packages"),
    "conda_channels": N_("Conda channels"),
    "test_command": N_("Test command"),
    "description": N_("Description"),
    "base_policy": N_("Base image policy"),
    "parent": N_("Parent spec"),
    "auto_activate": N_("Activate new builds automatically"),
    "active_revision": N_("Active revision"),
}


def shows_stored_values() -> bool:
    """True where stored values are shown as stored: English, or no request."""
    locale = get_locale()
    return locale is None or locale.language == "en"


def translated_or(value: str, message_id: str | None) -> str:
    """`message_id` in the request's language; `value` itself in English or without an id."""
    if message_id is None or shows_stored_values():
        return value
    return gettext(message_id)


def status_label(status: str) -> str:
    """A job status (``JobStatus``) in the request's language."""
    word = STATUS_WORDS.get(status)
    return status if word is None or shows_stored_values() else word()


def spec_field_label(field: str) -> str:
    """A spec field's name (``base_image``) in the request's language."""
    return translated_or(field, SPEC_FIELD_WORDS.get(field))


def register_labels(app) -> None:
    app.add_template_global(status_label)
    app.add_template_global(status_label, "status_word")  # for the macro of the same name
    app.add_template_global(spec_field_label)
