"""Account commands for scripts and tests: no prompt when stdin is not a terminal."""
import sys

import click
from sqlalchemy import select

from ..extensions import db
from ..models import User
from .service import create_or_update_user, issue_token

MIN_PASSWORD_LENGTH = 8


def register_cli(app):
    @app.cli.command("create-admin")
    @click.argument("username")
    def create_admin(username):
        """Create USERNAME (or set its password). Reads the password from stdin when piped."""
        if sys.stdin.isatty():
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise click.ClickException(f"The password needs at least {MIN_PASSWORD_LENGTH} characters.")
        create_or_update_user(username, password)
        click.echo(f"Admin {username!r} is ready.")

    @app.cli.command("create-token")
    @click.argument("username")
    def create_token(username):
        """Print a new API token for USERNAME (shown once; only its hash is stored)."""
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None:
            raise click.ClickException(f"No user {username!r}; create it with create-admin first.")
        click.echo(issue_token(user))
