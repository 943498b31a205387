"""Revisions: what is inside each built image, and which one users should take.

This package owns the manifest rows (``JobPackage``) once the verify step
(``app.builds.verify``) has written them: queries over them, compare (pure diff
functions), pin (pure: manifest + spec -> pinned lines), activate and roll back
(re-tagging ``latest`` in the registry), and the SBOM.
"""
