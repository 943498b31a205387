"""Scratch databases for live stacks (a server, real workers) in the integration and
browser tests: a new PostgreSQL database when the suite runs on PostgreSQL
(DATABASE_URL set, as in the second pass of scripts/test), else a SQLite file."""
import os
import uuid

import psycopg
from sqlalchemy.engine import make_url

import config


def scratch_database_uri(sqlite_path):
    """A database of its own for a live stack (server, workers): a new PostgreSQL database
    on the server DATABASE_URL names when the suite runs on PostgreSQL, else a SQLite file."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return f"sqlite:///{sqlite_path}"
    base = make_url(config._database_url())
    name = f"ib_scratch_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq_dsn(base.set(database="postgres")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)


def drop_scratch_database(uri):
    """Drop a database made by scratch_database_uri (a SQLite file goes with its folder)."""
    if not uri.startswith("postgresql"):
        return
    url = make_url(uri)
    with psycopg.connect(_libpq_dsn(url.set(database="postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def _libpq_dsn(url):
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
