"""Request bodies and query parameters, checked for shape before the services
validate their content. Shape errors use the same FieldError as content errors, so
a caller gets every problem of a request in one 422 answer."""
from __future__ import annotations

from flask import request
from werkzeug.exceptions import BadRequest

from ..specs.validation import PACKAGE_FIELDS, FieldError
from .errors import InvalidInput

SPEC_FIELDS = ("name", "base_image", "pull_secret", *PACKAGE_FIELDS)
CREDENTIAL_FIELDS = ("name", "registry", "username", "password")


def json_object() -> dict:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
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
    expected = ", ".join(known)
    errors = [FieldError(str(key), f"Unknown field; the fields are {expected}.") for key in body if key not in known]
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
        return None if value is None or isinstance(value, list) else "Must be a list of strings, one package per entry."
    if key == "pull_secret":
        return None if value is None or isinstance(value, str) else "Must be a credential name (string) or null."
    return _string_shape_error(key, value)


def _string_shape_error(_key, value) -> str | None:
    return None if isinstance(value, str) else "Must be a string."


def query_int(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput([FieldError(name, "Must be an integer.")]) from None
    if value < minimum:
        raise InvalidInput([FieldError(name, f"Must be at least {minimum}.")])
    return min(value, maximum) if maximum is not None else value


def query_bool(name: str, default: bool) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise InvalidInput([FieldError(name, "Must be true or false.")])


def sorted_errors(errors: list[FieldError], fields) -> list[FieldError]:
    order = {name: index for index, name in enumerate(fields)}
    return sorted(errors, key=lambda e: (order.get(e.field, len(order)), e.line or 0))

