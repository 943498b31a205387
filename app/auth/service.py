"""Users and API tokens: sign-in, tokens with a name, an expiry and a last-used time,
revoking them, and disabling users. Each change is recorded in the audit trail."""
from __future__ import annotations

import functools
import secrets
from datetime import timedelta

from flask import current_app, g, has_request_context
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..extensions import db
from ..models import ApiToken, User, utcnow

TOKEN_PREFIX = "ib_"
PREFIX_LENGTH = 10
MAX_TOKEN_NAME = 80
MAX_EXPIRY_DAYS = 3650


class TokenInputError(ValueError):
    """A token's name or expiry is not acceptable; ``field`` names which."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def authenticate(username: str, password: str) -> User | None:
    """The user when the password is right and the user is not disabled, else None; as
    slow for an unknown username as for a wrong password. The attempt (either way) is
    recorded. Commits."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        check_password_hash(_dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
    elif user.check_password(password) and user.is_active:
        audit.record(audit.SIGNIN_SUCCEEDED, user=user)
        db.session.commit()
        return user
    audit.record(audit.SIGNIN_FAILED, user=username or "(blank)",
                 target="disabled user" if user and not user.is_active else None)
    db.session.commit()
    return None


@functools.cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash(secrets.token_hex(16), method=method)


def check_hash_method(method: str) -> str:
    """PASSWORD_HASH_METHOD checked at start: a method werkzeug can hash with (``scrypt``,
    ``scrypt:32768:8:1``, ``pbkdf2:sha256:600000``), or ValueError naming the setting. The
    check is the dummy hash an unknown username's sign-in compares with, made once now."""
    try:
        _dummy_hash(method)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"PASSWORD_HASH_METHOD {method!r} is not a werkzeug hash method "
            "(for example scrypt or pbkdf2:sha256:600000)"
        ) from exc
    return method


def create_or_update_user(username: str, password: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username)
        db.session.add(user)
        audit.record(audit.USER_CREATED, target=username, user=audit.SYSTEM)
    else:
        audit.record(audit.USER_PASSWORD_SET, target=username, user=audit.SYSTEM)
    user.set_password(password)
    db.session.commit()
    return user


def user_named(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username))


def set_disabled(user: User, disabled: bool) -> None:
    """Disable (or enable again) a user: a disabled user's sessions and tokens stop
    working at their next request. Commits."""
    if (user.disabled_at is not None) == disabled:
        return
    user.disabled_at = utcnow() if disabled else None
    audit.record(audit.USER_DISABLED if disabled else audit.USER_ENABLED, target=user.username, user=audit.SYSTEM)
    db.session.commit()


def set_password(user: User, password: str) -> None:
    user.set_password(password)
    audit.record(audit.USER_PASSWORD_SET, target=user.username, changes={"password": (None, None)},
                 user=audit.SYSTEM)
    db.session.commit()


def check_token_input(name, expires_in_days) -> tuple[str, int | None]:
    """(name, days) when acceptable; TokenInputError naming the field otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise TokenInputError("name", _("A name is required (what the token is for)."))
    name = name.strip()
    if len(name) > MAX_TOKEN_NAME:
        raise TokenInputError("name", _("At most %(max)d characters.", max=MAX_TOKEN_NAME))
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise TokenInputError("name", _("No control characters."))
    if expires_in_days is not None:
        if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int):
            raise TokenInputError("expires_in_days", _("Must be a whole number of days, or null for no expiry."))
        if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
            raise TokenInputError("expires_in_days", _("Must be between 1 and %(max)d days.", max=MAX_EXPIRY_DAYS))
    return name, expires_in_days


def issue_token(user: User, name: str = "api", expires_in_days: int | None = None, *, actor=None) -> str:
    """A new token; only its hash is stored, so this is the one time it is seen. Commits.
    Its row is ``find_token(token[:PREFIX_LENGTH])``. ``actor``: who made it (None: the
    request's user, ``system`` outside a request)."""
    name, expires_in_days = check_token_input(name, expires_in_days)
    while True:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix = token[:PREFIX_LENGTH]
        # The prefix names the token for listing and revoking, so it is unique.
        if not db.session.scalar(select(ApiToken.id).where(ApiToken.prefix == prefix)):
            break
    now = utcnow()
    row = ApiToken(
        user_id=user.id,
        token_hash=ApiToken.hash_token(token),
        prefix=prefix,
        name=name,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    db.session.add(row)
    audit.record(audit.TOKEN_CREATED, target=_token_label(row, user),
                 changes={"name": (None, name), "expires_at": (None, _iso(row.expires_at))}, user=actor)
    db.session.commit()
    return token


def tokens_of(user: User | None = None) -> list[ApiToken]:
    """Tokens not revoked (expired ones included), newest first; all users' if None."""
    query = select(ApiToken).where(ApiToken.revoked_at.is_(None)).order_by(ApiToken.id.desc())
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(db.session.scalars(query))


def find_token(prefix: str, user: User | None = None) -> ApiToken | None:
    """The live (not revoked) token with this prefix, of ``user`` if given."""
    if len(prefix) != PREFIX_LENGTH or not prefix.isprintable():
        return None  # no prefix looks like that (and PostgreSQL refuses a NUL in a parameter)
    query = select(ApiToken).where(ApiToken.prefix == prefix, ApiToken.revoked_at.is_(None))
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return db.session.scalar(query)


def revoke_token(row: ApiToken, *, actor=None) -> None:
    """The token answers 401 from now on. Commits."""
    row.revoked_at = utcnow()
    audit.record(audit.TOKEN_REVOKED, target=_token_label(row, row.user), user=actor)
    db.session.commit()


def token_expired(row: ApiToken) -> bool:
    return row.expires_at is not None and row.expires_at <= utcnow()


def user_for_token(token: str) -> User | None:
    """The user of a valid token: known, not revoked, not expired, its user not disabled."""
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == ApiToken.hash_token(token)))
    if row is None or row.revoked_at is not None or token_expired(row) or not row.user.is_active:
        return None
    row.last_used_at = utcnow()
    db.session.commit()
    return row.user


def _token_label(row: ApiToken, user: User) -> str:
    return f"{row.prefix}… ({row.name}) of {user.username}"


def _iso(moment) -> str | None:
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


def acting_username() -> str | None:
    """Who makes the current request: the API token's user, else the signed-in user
    (None outside a request, or for nobody signed in)."""
    if not has_request_context():
        return None
    api_user = g.get("api_user")
    if api_user is not None:
        return api_user.username
    return current_user.username if current_user.is_authenticated else None
