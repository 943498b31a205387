"""Bearer-token authentication for every API request except the OpenAPI document."""
from flask import g, jsonify, request

from ..auth.service import user_for_token
from . import bp

PUBLIC_ENDPOINTS = {"api.openapi"}


@bp.before_request
def require_token():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("Send an API token: 'Authorization: Bearer <token>' (flask create-token).")
    user = user_for_token(token.strip())
    if user is None:
        return _unauthorized("The API token is not valid.", rfc6750_error="invalid_token")
    g.api_user = user
    return None


def _unauthorized(message, rfc6750_error=None):
    response = jsonify(error=message)
    response.status_code = 401
    challenge = 'Bearer realm="imagebuilder"'
    if rfc6750_error:
        challenge += f', error="{rfc6750_error}"'
    response.headers["WWW-Authenticate"] = challenge
    return response
