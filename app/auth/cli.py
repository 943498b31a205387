"""Account commands for scripts and tests: no prompt when stdin is not a terminal.
What they change is recorded in the audit trail as done by ``system``."""
import sys

import click
from sqlalchemy import func, select

from .. import audit
from ..extensions import db
from ..models import ApiToken, User
from .service import (
    MAX_EXPIRY_DAYS,
    TokenInputError,
    create_or_update_user,
    find_token,
    issue_token,
    revoke_token,
    set_disabled,
    set_password,
    token_expired,
    tokens_of,
    user_named,
)

MIN_PASSWORD_LENGTH = 8


def _read_password() -> str:
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"The password needs at least {MIN_PASSWORD_LENGTH} characters.")
    return password


def _user_or_fail(username: str) -> User:
    user = user_named(username)
    if user is None:
        raise click.ClickException(f"No user {username!r}; create it with create-admin first.")
    return user


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def register_cli(app):
    @app.cli.command("create-admin")
    @click.argument("username")
    def create_admin(username):
        """Create USERNAME (or set its password). Reads the password from stdin when piped."""
        create_or_update_user(username, _read_password())
        click.echo(f"Admin {username!r} is ready.")

    @app.cli.command("set-password")
    @click.argument("username")
    def set_password_command(username):
        """Set the password of USERNAME (read from stdin when piped)."""
        user = _user_or_fail(username)
        set_password(user, _read_password())
        click.echo(f"Password of {username!r} changed.")

    @app.cli.command("list-users")
    def list_users():
        """Users with their state and number of live tokens."""
        counts = dict(db.session.execute(
            select(ApiToken.user_id, func.count(ApiToken.id)).where(ApiToken.revoked_at.is_(None))
            .group_by(ApiToken.user_id)
        ).all())
        for user in db.session.scalars(select(User).order_by(User.username)):
            state = f"disabled {_when(user.disabled_at)}" if user.disabled_at else "active"
            click.echo(f"{user.username}\t{state}\tcreated {_when(user.created_at)}\ttokens {counts.get(user.id, 0)}")

    @app.cli.command("disable-user")
    @click.argument("username")
    def disable_user(username):
        """Disable USERNAME: its sessions and tokens stop working at their next request."""
        set_disabled(_user_or_fail(username), True)
        click.echo(f"User {username!r} is disabled.")

    @app.cli.command("enable-user")
    @click.argument("username")
    def enable_user(username):
        """Let a disabled USERNAME sign in again (its tokens work again too)."""
        set_disabled(_user_or_fail(username), False)
        click.echo(f"User {username!r} is enabled.")

    @app.cli.command("create-token")
    @click.argument("username")
    @click.option("--name", default="cli", show_default=True, help="What the token is for.")
    @click.option("--expires-in-days", type=click.IntRange(1, MAX_EXPIRY_DAYS), default=None,
                  help="Days until it stops working (default: never).")
    def create_token(username, name, expires_in_days):
        """Print a new API token for USERNAME (shown once; only its hash is stored)."""
        user = _user_or_fail(username)
        try:
            click.echo(issue_token(user, name, expires_in_days, actor=audit.SYSTEM))
        except TokenInputError as exc:
            raise click.ClickException(f"--{exc.field.replace('_', '-')}: {exc}") from None

    @app.cli.command("list-tokens")
    def list_tokens():
        """Tokens not revoked, newest first: prefix, user, name, expiry, last use."""
        for row in tokens_of():
            expiry = ("expired " if token_expired(row) else "expires ") + _when(row.expires_at) if row.expires_at else "never expires"
            click.echo(f"{row.prefix}\t{row.user.username}\t{row.name}\t{expiry}\tlast used {_when(row.last_used_at)}")

    @app.cli.command("revoke-token")
    @click.argument("prefix")
    def revoke_token_command(prefix):
        """Revoke the token that starts with PREFIX (as list-tokens shows it)."""
        row = find_token(prefix)
        if row is None:
            raise click.ClickException(f"No live token with prefix {prefix!r}; see list-tokens.")
        revoke_token(row, actor=audit.SYSTEM)
        click.echo(f"Token {row.prefix} ({row.name}) of {row.user.username} is revoked.")
