"""Database models. The rows are the truth; the queue only carries job ids."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


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


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(80), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)

    def set_password(self, password: str):
        self.password_hash = generate_password_hash(password)

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
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    started_at = db.Column(db.DateTime)
    finished_at = db.Column(db.DateTime)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    spec = db.relationship("ImageSpec", back_populates="jobs")

    @property
    def tag(self) -> str:
        return f"r{self.revision}-{self.input_hash}"

    @property
    def is_active(self) -> bool:
        return self.status in JobStatus.ACTIVE


class LogChunk(db.Model):
    __tablename__ = "log_chunks"
    __table_args__ = (db.UniqueConstraint("job_id", "seq", name="uq_log_chunks_job_seq"),)
    id = db.Column(db.Integer, primary_key=True)
    job_id = db.Column(db.Integer, db.ForeignKey("build_jobs.id", ondelete="CASCADE"), nullable=False)
    seq = db.Column(db.Integer, nullable=False)
    text = db.Column(db.Text, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
