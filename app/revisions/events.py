"""Signals about revisions, in a module of their own that imports nothing of the app, so
any package (the audit trail, the base watch) can connect to them without import cycles."""
from blinker import Namespace

_signals = Namespace()

# Sent by app.revisions.active.set_active after the change is committed.
# sender: the ImageSpec; keyword arguments: job (the now active BuildJob), previous
# (the revision that was active before, or None).
active_revision_changed = _signals.signal("active-revision-changed")
