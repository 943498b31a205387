"""Database models. The rows are the truth; the queue only carries job ids."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from flask import current_app
from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


# The largest INTEGER of SQLite's and PostgreSQL's columns alike: ids and revisions
# asked for beyond it cannot exist.
MAX_INTEGER = 2**31 - 1
# How long after a build succeeds its pages wait for it to become active (BuildJob.awaits_activation).
ACTIVATION_WAIT_SECONDS = 60


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    ACTIVE = (QUEUED, RUNNING)
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)
    ALL = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)


class Trigger:
    """Why a job started (BuildJob.trigger_kind). Rows from before triggers were recorded
    are ``unknown``."""

    UNKNOWN = "unknown"
    CREATED = "created"
    EDITED = "edited"
    REBUILD = "rebuild"
    PINNED = "pinned"
    ACTIVATED = "activated"
    BASE_CHANGED = "base-changed"
    PARENT_CHANGED = "parent-changed"

    ALL = (UNKNOWN, CREATED, EDITED, REBUILD, PINNED, ACTIVATED, BASE_CHANGED, PARENT_CHANGED)


class BasePolicy:
    """What the base-image watch does when a spec's base tag moves (ImageSpec.base_policy)."""

    REBUILD = "rebuild"
    NOTIFY = "notify"
    OFF = "off"

    ALL = (REBUILD, NOTIFY, OFF)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(80), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Set by `flask disable-user`: sign-in, the user's sessions and its tokens stop working.
    disabled_at = db.Column(db.DateTime)

    @property
    def is_active(self) -> bool:
        """Flask-Login's view: a disabled user cannot sign in."""
        return self.disabled_at is None

    def set_password(self, password: str):
        self.password_hash = generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class ApiToken(db.Model):
    __tablename__ = "api_tokens"
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    # sha256 of the token: tokens are long random strings, so a fast hash is enough
    # and lets a request find its token with one indexed lookup.
    token_hash = db.Column(db.String(64), unique=True, nullable=False)
    prefix = db.Column(db.String(12), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_used_at = db.Column(db.DateTime)
    user = db.relationship("User")
    name = db.Column(db.String(80), nullable=False, default="", server_default="")
    expires_at = db.Column(db.DateTime)  # None: never expires
    revoked_at = db.Column(db.DateTime)

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8")).hexdigest()


class RegistryCredential(db.Model):
    __tablename__ = "registry_credentials"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(128), unique=True, nullable=False)
    registry_host = db.Column(db.String(255), nullable=False)
    username = db.Column(db.String(255), nullable=False)
    # Fernet token (app.crypto); the plain password is never stored or shown.
    password_encrypted = db.Column(db.Text, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)


class ImageSpec(db.Model):
    __tablename__ = "image_specs"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(128), unique=True, nullable=False)
    base_image = db.Column(db.String(512), nullable=False)
    pull_secret_id = db.Column(db.Integer, db.ForeignKey("registry_credentials.id", ondelete="RESTRICT"))
    apt = db.Column(db.JSON, nullable=False, default=list)
    pip = db.Column(db.JSON, nullable=False, default=list)
    conda = db.Column(db.JSON, nullable=False, default=list)
    # Run inside the built image with /bin/sh -c as the image's user; non-zero fails the job.
    test_command = db.Column(db.Text)
    # The revision users should take (its job succeeded); None until one has.
    active_revision = db.Column(db.Integer)
    # A succeeded build becomes active by itself unless this is off (then an admin activates).
    auto_activate = db.Column(db.Boolean, nullable=False, default=True, server_default=db.true())
    # Base-image watch (app/watch): policy, and what the last check found.
    base_policy = db.Column(db.String(16), nullable=False, default=BasePolicy.REBUILD,
                            server_default=BasePolicy.REBUILD)
    base_update_digest = db.Column(db.String(100))  # policy notify: the new digest seen; cleared by a build
    base_checked_at = db.Column(db.DateTime)
    base_check_error = db.Column(db.Text)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    pull_secret = db.relationship("RegistryCredential")
    jobs = db.relationship(
        "BuildJob",
        back_populates="spec",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="BuildJob.revision.desc()",
        lazy="dynamic",
    )


class BuildJob(db.Model):
    __tablename__ = "build_jobs"
    __table_args__ = (
        db.UniqueConstraint("spec_id", "revision", name="uq_build_jobs_spec_revision"),
        db.Index("ix_build_jobs_spec_status", "spec_id", "status"),
    )
    id = db.Column(db.Integer, primary_key=True)
    spec_id = db.Column(db.Integer, db.ForeignKey("image_specs.id", ondelete="CASCADE"), nullable=False)
    revision = db.Column(db.Integer, nullable=False)
    input_hash = db.Column(db.String(16), nullable=False)
    status = db.Column(db.String(16), nullable=False, default=JobStatus.QUEUED, index=True)
    # The spec exactly as this job builds it: fields, pull secret name, Containerfile.
    spec_snapshot = db.Column(db.JSON, nullable=False)
    image = db.Column(db.String(512))
    digest = db.Column(db.String(100))
    size_bytes = db.Column(db.BigInteger)
    progress = db.Column(db.String(32))
    error = db.Column(db.Text)
    log_bytes = db.Column(db.BigInteger, nullable=False, default=0)
    log_truncated = db.Column(db.Boolean, nullable=False, default=False)
    worker = db.Column(db.String(255))
    heartbeat_at = db.Column(db.DateTime)
    cancel_requested = db.Column(db.Boolean, nullable=False, default=False)
    # Why the job started and who started it (a user name, or None for the system).
    trigger_kind = db.Column(db.String(32), nullable=False, default=Trigger.UNKNOWN, server_default=Trigger.UNKNOWN)
    trigger_user = db.Column(db.String(80))
    trigger_detail = db.Column(db.String(500))
    # What the verify step found in the built image (app/builds/verify.py); the package
    # rows are JobPackage. packages_count is None until the job has a manifest.
    base_digest = db.Column(db.String(100))
    os_name = db.Column(db.String(255))
    image_user = db.Column(db.String(255))
    packages_count = db.Column(db.Integer)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    started_at = db.Column(db.DateTime)
    finished_at = db.Column(db.DateTime)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    # Each build step's layer and where it came from (app/builds/cache.py): a list of
    # {"layer", "key", "source"} with source "shared" (the registry's cache, another
    # host's work), "local" (this host's cache) or "built".
    cache_layers = db.Column(db.JSON)

    spec = db.relationship("ImageSpec", back_populates="jobs")

    @property
    def tag(self) -> str:
        return f"r{self.revision}-{self.input_hash}"

    @property
    def is_active(self) -> bool:
        return self.status in JobStatus.ACTIVE

    @property
    def log_may_grow(self) -> bool:
        """Queued or running, or just succeeded and about to be activated (the activation
        appends its line): the log's viewers keep asking for more."""
        return self.is_active or self.awaits_activation

    @property
    def awaits_activation(self) -> bool:
        """Just succeeded, and the runner is about to make it the active revision (it does
        right after the final state): the pages keep polling until it has, or has said
        why not, for at most ACTIVATION_WAIT_SECONDS."""
        spec = self.spec
        return (
            self.status == JobStatus.SUCCEEDED
            and spec.auto_activate
            and (spec.active_revision or 0) < self.revision
            and self.finished_at is not None
            and (utcnow() - self.finished_at).total_seconds() < ACTIVATION_WAIT_SECONDS
        )


class LogChunk(db.Model):
    __tablename__ = "log_chunks"
    __table_args__ = (db.UniqueConstraint("job_id", "seq", name="uq_log_chunks_job_seq"),)
    id = db.Column(db.Integer, primary_key=True)
    job_id = db.Column(db.Integer, db.ForeignKey("build_jobs.id", ondelete="CASCADE"), nullable=False)
    seq = db.Column(db.Integer, nullable=False)
    text = db.Column(db.Text, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class JobPackage(db.Model):
    """One installed package of a job's image (its manifest), written by the verify step.
    Read only by the job's Packages section, its API, the SBOM, compare and pin: never by
    the spec list, the Jobs tab or the log poll."""

    __tablename__ = "job_packages"
    __table_args__ = (db.Index("ix_job_packages_job_manager_name", "job_id", "manager", "name"),)
    id = db.Column(db.Integer, primary_key=True)
    job_id = db.Column(db.Integer, db.ForeignKey("build_jobs.id", ondelete="CASCADE"), nullable=False)
    manager = db.Column(db.String(8), nullable=False)  # apt | pip | conda
    name = db.Column(db.String(255), nullable=False)
    version = db.Column(db.String(255), nullable=False)
    arch = db.Column(db.String(64))  # dpkg architecture; conda build string goes in `build`
    build = db.Column(db.String(255))
    channel = db.Column(db.String(255))
    requested = db.Column(db.Boolean, nullable=False, default=False)


class AuditEvent(db.Model):
    """One state change (app/audit): who, when, from where, what, and the change in brief.
    The spec is kept by name, so a deleted spec's history stays readable."""

    __tablename__ = "audit_events"
    __table_args__ = (
        db.Index("ix_audit_events_spec_id", "spec", "id"),
        db.Index("ix_audit_events_actor_id", "actor", "id"),
    )
    id = db.Column(db.Integer, primary_key=True)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    actor = db.Column(db.String(80), nullable=False)  # a user name, or "system"
    address = db.Column(db.String(64))  # the client's address; None outside a request
    action = db.Column(db.String(40), nullable=False, index=True)
    spec = db.Column(db.String(128))
    target = db.Column(db.String(255))  # what else it was about: a job, credential, token, user
    changes = db.Column(db.JSON)  # {field: [old, new]}; secrets only ever as "(changed)"


class CacheLayer(db.Model):
    """One tag of the shared layer cache repository (BUILD_CACHE_REPO), named by Podman's
    cache key: who built it first, and when a build last pushed or pulled it (pruning)."""

    __tablename__ = "cache_layers"
    id = db.Column(db.Integer, primary_key=True)
    cache_key = db.Column(db.String(128), nullable=False, unique=True)
    layer = db.Column(db.String(64), nullable=False)  # "APT layer", "pip layer", ...
    built_host = db.Column(db.String(255), nullable=False)
    spec_name = db.Column(db.String(255), nullable=False)
    revision = db.Column(db.Integer, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    last_used_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
