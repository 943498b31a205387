"""Bearer-token authentication for every API request except the OpenAPI document."""
from flask import g, jsonify, request
from flask_babel import gettext as _

from ..auth.service import user_for_token
from ..auth.throttle import record_failure, seconds_to_wait, wait_message
from ..ops.logging import remember_username
from . import bp

PUBLIC_ENDPOINTS = {"api.openapi"}


@bp.before_request
def require_token():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    wait = seconds_to_wait("token")
    if wait:
        response = jsonify(error=wait_message(wait))
        response.status_code = 429
        response.headers["Retry-After"] = str(wait)
        return response
    scheme, _space, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized(_("Send an API token: 'Authorization: Bearer <token>' (flask create-token)."))
    user = user_for_token(token.strip())
    if user is None:
        record_failure("token")
        return _unauthorized(_("The API token is not valid."), rfc6750_error="invalid_token")
    g.api_user = user
    remember_username(user)
    return None


def _unauthorized(message, rfc6750_error=None):
    response = jsonify(error=message)
    response.status_code = 401
    challenge = 'Bearer realm="imagebuilder"'
    if rfc6750_error:
        challenge += f', error="{rfc6750_error}"'
    response.headers["WWW-Authenticate"] = challenge
    return response
