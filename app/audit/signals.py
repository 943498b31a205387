"""Audit rows for changes other packages announce with a signal rather than a call."""
from ..extensions import db
from ..revisions.events import active_revision_changed
from . import BUILD_ACTIVATED, record


@active_revision_changed.connect
def _activated(spec, *, job, previous, **_extra):
    # set_active has committed its change already; this row follows in a commit of its own.
    record(BUILD_ACTIVATED, spec=spec, target=f"r{job.revision}",
           changes={"active_revision": (previous, job.revision)})
    db.session.commit()
