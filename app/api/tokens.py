"""API tokens over the API: the caller's own tokens, a new one (its secret in this one
answer), and revoking one by its prefix."""
from flask import abort, g, jsonify
from flask_babel import gettext as _

from ..auth.service import PREFIX_LENGTH, TokenInputError, find_token, issue_token, revoke_token, tokens_of
from ..specs.validation import FieldError
from . import bp
from .errors import InvalidInput
from .payloads import json_object, unknown_field
from .serializers import token_json

TOKEN_FIELDS = ("name", "expires_in_days")


@bp.get("/tokens")
def list_tokens():
    return jsonify(tokens=[token_json(row) for row in tokens_of(g.api_user)])


@bp.post("/tokens")
def create_token_endpoint():
    body = json_object()
    unknown = [FieldError(str(key), unknown_field(TOKEN_FIELDS)) for key in body if key not in TOKEN_FIELDS]
    if unknown:
        raise InvalidInput(unknown)
    try:
        token = issue_token(g.api_user, body.get("name"), body.get("expires_in_days"))
    except TokenInputError as exc:
        raise InvalidInput([FieldError(exc.field, str(exc))]) from None
    return jsonify({**token_json(find_token(token[:PREFIX_LENGTH])), "token": token}), 201


@bp.delete("/tokens/<prefix>")
def revoke_token_endpoint(prefix):
    row = find_token(prefix, g.api_user)
    if row is None:
        abort(404, _("No live token of yours with prefix %(prefix)s.", prefix=repr(prefix)))
    revoke_token(row)
    return "", 204
