"""Request bodies and query parameters, checked for shape before the services
validate their content. Shape errors use the same FieldError as content errors, so
a caller gets every problem of a request in one 422 answer."""
from __future__ import annotations

from flask import request
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

from ..models import MAX_INTEGER, BasePolicy
from ..specs.validation import PACKAGE_FIELDS, FieldError
from .errors import InvalidInput

SPEC_FIELDS = ("name", "base_image", "pull_secret", *PACKAGE_FIELDS, "test_command", "auto_activate", "base_policy")
CREDENTIAL_FIELDS = ("name", "registry", "username", "password")


def json_object() -> dict:
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:
        raise BadRequest(_("The request body is nested too deeply to be a spec or a credential.")) from None
    if not isinstance(body, dict):
        raise BadRequest(_("The request body must be a JSON object."))
    return body


def spec_fields(body: dict) -> tuple[dict, list[FieldError], set[str]]:
    """Package lists go through as they are: validate_spec reports an entry that is
    not one line of text at its position."""
    return _fields_of_shape(body, SPEC_FIELDS, _spec_shape_error)


def credential_fields(body: dict) -> tuple[dict, list[FieldError], set[str]]:
    return _fields_of_shape(body, CREDENTIAL_FIELDS, _string_shape_error)


def _fields_of_shape(body: dict, known, shape_error) -> tuple[dict, list[FieldError], set[str]]:
    """(the known fields whose value has the right type, errors for unknown fields and
    wrong types, the names of the fields left out for their type)."""
    errors = [FieldError(str(key), unknown_field(known)) for key in body if key not in known]
    data, unusable = {}, set()
    for key in known:
        if key not in body:
            continue
        message = shape_error(key, body[key])
        if message:
            errors.append(FieldError(key, message))
            unusable.add(key)
        else:
            data[key] = body[key]
    return data, errors, unusable


def _spec_shape_error(key, value) -> str | None:
    if key in PACKAGE_FIELDS:
        return None if value is None or isinstance(value, list) else _("Must be a list of strings, one package per entry.")
    if key == "base_policy":
        return None if isinstance(value, str) else _("Must be one of %(choices)s.", choices=", ".join(BasePolicy.ALL))
    if key == "pull_secret":
        return None if value is None or isinstance(value, str) else _("Must be a credential name (string) or null.")
    if key == "test_command":
        return None if value is None or isinstance(value, str) else _("Must be a one-line shell command (string) or null.")
    if key == "auto_activate":
        return None if isinstance(value, bool) else must_be_a_boolean()
    return _string_shape_error(key, value)


def _string_shape_error(_key, value) -> str | None:
    return None if isinstance(value, str) else _("Must be a string.")


def unknown_field(known) -> str:
    """The message for a field a body may not have; ``known``: the ones it may."""
    if len(known) == 1:
        return _("Unknown field; the only field is %(field)s.", field=known[0])
    return _("Unknown field; the fields are %(fields)s.", fields=", ".join(known))


def must_be_a_boolean() -> str:
    return _("Must be true or false.")


def must_be_between(minimum: int, maximum: int) -> str:
    return _("Must be between %(minimum)d and %(maximum)d.", minimum=minimum, maximum=maximum)


def body_int(body: dict, name: str, *, minimum: int = 1, maximum: int = MAX_INTEGER) -> int:
    """A required integer field of a JSON body, within the database's integer range."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput([FieldError(name, _("Required: an integer."))])
    if not minimum <= value <= maximum:
        raise InvalidInput([FieldError(name, must_be_between(minimum, maximum))])
    return value


def query_bool(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise InvalidInput([FieldError(name, must_be_a_boolean())])


def sorted_errors(errors: list[FieldError], fields) -> list[FieldError]:
    order = {name: index for index, name in enumerate(fields)}
    return sorted(errors, key=lambda e: (order.get(e.field, len(order)), e.line or 0))

