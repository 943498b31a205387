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
    """(the fields in the shape validate_spec takes, shape errors, fields whose whole
    value was unusable). A package list element that is not one line of text is
    reported at its line and blanked, so the other lines keep their numbers."""
    data, errors, unusable = {}, _unknown_keys(body, SPEC_FIELDS), set()
    for key in ("name", "base_image"):
        if key in body:
            if isinstance(body[key], str):
                data[key] = body[key]
            else:
                errors.append(FieldError(key, "Must be a string."))
                unusable.add(key)
    if "pull_secret" in body:
        secret = body["pull_secret"]
        if secret is None or isinstance(secret, str):
            data["pull_secret"] = (secret or "").strip() or None
        else:
            errors.append(FieldError("pull_secret", "Must be a credential name (string) or null."))
            unusable.add("pull_secret")
    for key in PACKAGE_FIELDS:
        if key not in body:
            continue
        value = body[key]
        if value is None:
            value = []
        if not isinstance(value, list):
            errors.append(FieldError(key, "Must be a list of strings, one package per element."))
            unusable.add(key)
            continue
        lines = []
        for number, element in enumerate(value, 1):
            if not isinstance(element, str):
                errors.append(FieldError(key, "Must be a string.", number))
                element = ""
            elif "\n" in element or "\r" in element:
                errors.append(FieldError(key, "One package per element; line breaks are not allowed.", number))
                element = ""
            lines.append(element)
        data[key] = lines
    return data, errors, unusable


def credential_fields(body: dict) -> tuple[dict, list[FieldError], set[str]]:
    data, errors, unusable = {}, _unknown_keys(body, CREDENTIAL_FIELDS), set()
    for key in CREDENTIAL_FIELDS:
        if key not in body:
            continue
        if isinstance(body[key], str):
            data[key] = body[key]
        else:
            errors.append(FieldError(key, "Must be a string."))
            unusable.add(key)
    return data, errors, unusable


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


def sorted_errors(errors: list[FieldError], fields) -> list[FieldError]:
    order = {name: index for index, name in enumerate(fields)}
    return sorted(errors, key=lambda e: (order.get(e.field, len(order)), e.line or 0))


def _unknown_keys(body: dict, known) -> list[FieldError]:
    expected = ", ".join(known)
    return [FieldError(str(key), f"Unknown field; the fields are {expected}.") for key in body if key not in known]
