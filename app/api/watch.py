"""API endpoints of the base-image watch (app/watch): check a spec's base now."""
from flask import jsonify

from ..auth.service import acting_username
from ..watch.base_check import CheckBusy, check_spec_base
from . import bp
from .routes import _spec_or_404


@bp.post("/specs/<name>/check-base")
def check_base_endpoint(name):
    """Resolve the spec's base tag now and act on its base policy. A registry error is
    part of the answer (`error`), stored on the spec, and starts nothing."""
    spec = _spec_or_404(name)
    try:
        result = check_spec_base(spec, acting_username())
    except CheckBusy as exc:
        return jsonify(error=str(exc)), 409
    return jsonify(
        current_digest=result.current_digest,
        built_from=result.built_from,
        moved=result.moved,
        job=result.job.id if result.job else None,
        error=result.error,
        note=result.note,
    )
