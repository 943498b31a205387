"""Users and API tokens."""
from __future__ import annotations

import secrets

from sqlalchemy import select

from ..extensions import db
from ..models import ApiToken, User, utcnow

TOKEN_PREFIX = "ib_"


def authenticate(username: str, password: str) -> User | None:
    user = db.session.scalar(select(User).where(User.username == username))
    if user and user.check_password(password):
        return user
    return None


def create_or_update_user(username: str, password: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(username=username)
        db.session.add(user)
    user.set_password(password)
    db.session.commit()
    return user


def issue_token(user: User) -> str:
    """A new token; only its hash is stored, so this is the one time it is seen."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, token_hash=ApiToken.hash_token(token), prefix=token[:10]))
    db.session.commit()
    return token


def user_for_token(token: str) -> User | None:
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == ApiToken.hash_token(token)))
    if row is None:
        return None
    row.last_used_at = utcnow()
    db.session.commit()
    return row.user
