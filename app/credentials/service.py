"""Registry credentials: the password is encrypted at rest and never shown again."""
from __future__ import annotations

import re

from flask_babel import gettext as _
from sqlalchemy import select

from .. import audit
from ..crypto import decrypt_secret, encrypt_secret
from ..extensions import db
from ..models import ImageSpec, RegistryCredential, utcnow
from ..specs.validation import FieldError

# The columns' sizes; a password is encrypted into a text column, bounded all the same.
USERNAME_MAX_LENGTH = 255
PASSWORD_MAX_LENGTH = 4096
_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_REGISTRY_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$")


class CredentialInUse(Exception):
    def __init__(self, credential, specs):
        self.credential = credential
        self.specs = specs
        names = ", ".join(s.name for s in specs)
        super().__init__(_("Credential %(name)s is used by: %(specs)s. Change those specs first.", name=repr(credential.name),
                           specs=names))


def validate_credential(data: dict, *, existing: RegistryCredential | None = None) -> list[FieldError]:
    errors = []
    name = (data.get("name") or "").strip() if existing is None else existing.name
    registry = (data.get("registry") or "").strip()
    username = (data.get("username") or "").strip()
    password = data.get("password") or ""
    if existing is None:
        if not _NAME_RE.fullmatch(name) or len(name) > 128:
            errors.append(FieldError("name", _("Use lowercase letters, digits and '.', '-', '_' between them.")))
        elif db.session.scalar(select(RegistryCredential.id).where(RegistryCredential.name == name)):
            errors.append(FieldError("name", _("A credential named %(name)s already exists.", name=repr(name))))
    if not _REGISTRY_RE.fullmatch(registry) or len(registry) > 255:
        errors.append(FieldError("registry", _("A registry host, optionally with a port (registry.example.com:5000).")))
    if not username or any(c.isspace() or ord(c) < 32 for c in username):
        errors.append(FieldError("username", _("A username without spaces is required.")))
    elif len(username) > USERNAME_MAX_LENGTH:
        errors.append(FieldError("username", _("At most %(max)d characters (this one has %(length)d).",
                                                  max=USERNAME_MAX_LENGTH, length=len(username))))
    if existing is None and not password:
        errors.append(FieldError("password", _("A password or access token is required.")))
    if any(ord(c) < 32 for c in password):
        errors.append(FieldError("password", _("The password may not contain control characters.")))
    elif len(password) > PASSWORD_MAX_LENGTH:
        errors.append(FieldError("password", _("At most %(max)d characters.", max=PASSWORD_MAX_LENGTH)))
    return errors


def create_credential(data: dict):
    errors = validate_credential(data)
    if errors:
        return None, errors
    cred = RegistryCredential(
        name=data["name"].strip(),
        registry_host=data["registry"].strip(),
        username=data["username"].strip(),
        password_encrypted=encrypt_secret(data["password"]),
    )
    db.session.add(cred)
    audit.record(audit.CREDENTIAL_CREATED, target=cred.name, changes=audit.diff({}, {
        "registry": cred.registry_host, "username": cred.username, "password": "set"}))
    db.session.commit()
    return cred, []


def update_credential(cred: RegistryCredential, data: dict):
    """Change registry/username; the password only when a new one is given."""
    merged = {"registry": cred.registry_host, "username": cred.username, **{k: v for k, v in data.items() if v is not None}}
    errors = validate_credential(merged, existing=cred)
    if errors:
        return errors
    before = {"registry": cred.registry_host, "username": cred.username}
    cred.registry_host = merged["registry"].strip()
    cred.username = merged["username"].strip()
    changes = audit.diff(before, {"registry": cred.registry_host, "username": cred.username})
    if data.get("password"):
        cred.password_encrypted = encrypt_secret(data["password"])
        changes["password"] = (None, None)
    cred.updated_at = utcnow()
    audit.record(audit.CREDENTIAL_CHANGED, target=cred.name, changes=changes)
    db.session.commit()
    return []


def delete_credential(cred: RegistryCredential) -> None:
    users = db.session.scalars(select(ImageSpec).where(ImageSpec.pull_secret_id == cred.id)).all()
    if users:
        raise CredentialInUse(cred, users)
    db.session.delete(cred)
    audit.record(audit.CREDENTIAL_DELETED, target=cred.name)
    db.session.commit()


def credential_password(cred: RegistryCredential) -> str:
    return decrypt_secret(cred.password_encrypted)
