"""Keeping images fresh: what starts a build without an admin pressing a button.

- ``lineage``: specs built on other specs (a base in our own registry, ``<REGISTRY>/<name>:<tag>``):
  parents, children, the cycle check validation asks for.
- ``cascade``: when a parent's active revision changes (the ``active_revision_changed``
  signal of ``app.revisions.active``), each child that follows the parent's ``latest`` and
  whose base policy is ``rebuild`` gets one job, trigger ``parent-changed``.
- ``base_check``: resolves each spec's base tag to its current digest with HEAD requests
  and compares it with the digest the active revision was built from; then rebuilds,
  marks the spec, or does nothing, per its base policy. Scheduled on the workers.
"""
