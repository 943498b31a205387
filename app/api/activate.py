"""API: activate a succeeded revision of a spec (the rollback). See docs/API.md."""
from flask import abort, jsonify

from ..revisions.active import ActivationRefused, UnknownRevision, activate_revision
from ..specs.validation import FieldError
from . import bp
from .errors import InvalidInput
from .payloads import body_int, json_object, unknown_field
from .routes import _spec_or_404, _spec_with_jobs


@bp.post("/specs/<name>/activate")
def activate_spec_revision(name):
    spec = _spec_or_404(name)
    body = json_object()
    unknown = [FieldError(str(key), unknown_field(("revision",))) for key in body if key != "revision"]
    if unknown:
        raise InvalidInput(unknown)
    revision = body_int(body, "revision")
    try:
        activate_revision(spec, revision)
    except UnknownRevision as exc:
        abort(404, str(exc))
    except ActivationRefused as exc:
        return jsonify(error=str(exc)), 409
    return jsonify(_spec_with_jobs(spec.name))
