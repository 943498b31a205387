"""Every API error is JSON: {"error": "..."} or, for invalid input, {"errors": [...]}.

Messages are English unless the request's Accept-Language asks for Traditional Chinese
(app/i18n); they are made with gettext while the request is answered, so every one
follows it. Keys, ``field`` and ``line`` never change."""
from flask import current_app, jsonify, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge, default_exceptions

from ..params import InvalidParameter
from ..specs.validation import FieldError
from ..ui import body_too_large, error_description
from . import bp

ROUTABLE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class InvalidInput(Exception):
    """Answered 422 with the per-field, per-line errors (FieldError) of the page."""

    def __init__(self, errors):
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


@bp.errorhandler(InvalidInput)
def invalid_input(exc):
    return jsonify(errors=[e.as_dict() for e in exc.errors]), 422


@bp.errorhandler(InvalidParameter)
def invalid_parameter(exc):
    return jsonify(errors=[FieldError(exc.field, exc.message).as_dict()]), 422


def http_error(exc):
    if isinstance(exc, RequestEntityTooLarge):
        exc = body_too_large(exc)
    response = jsonify(error=error_description(exc))
    response.status_code = exc.code
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


# Flask prefers an app-wide handler for a status code (the pages' HTML 404) over a
# blueprint's handler for a class, so the API registers its handler per code too.
bp.register_error_handler(HTTPException, http_error)
for _code in default_exceptions:
    bp.register_error_handler(_code, http_error)


# A URL no rule matches has no blueprint, so the pages' login guard would redirect it
# to /login and the app would answer in HTML. This rule keeps every /api/v1 URL inside
# the API; it only wins when no API route matches the path and the method.
@bp.route("/", defaults={"path": ""}, methods=ROUTABLE_METHODS)
@bp.route("/<path:path>", methods=ROUTABLE_METHODS)
def unknown_route(path):
    allowed = _methods_routed_elsewhere()
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed)
    raise NotFound(_("No such API endpoint; the endpoints are listed in /api/v1/openapi.yaml."))


def _methods_routed_elsewhere():
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in ROUTABLE_METHODS:
        try:
            endpoint, _args = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.append(method)
    return allowed
