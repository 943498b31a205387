"""The schema comes from the migrations: an empty database upgraded with the release
command (`flask db upgrade`) matches the models exactly, on SQLite and on PostgreSQL."""
import os
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app import models  # noqa: F401  (the tables the metadata must hold)
from app.extensions import db
from scratchdb import drop_scratch_database, scratch_database_uri

REPO = Path(__file__).resolve().parent.parent


def test_an_empty_database_upgrades_to_the_models_schema(tmp_path):
    uri = scratch_database_uri(tmp_path / "migrated.db")
    try:
        env = {**os.environ, "DATABASE_URL": uri, "INSTANCE_PATH": str(tmp_path / "instance")}
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        engine = create_engine(uri)
        try:
            tables = set(inspect(engine).get_table_names())
            assert {"users", "api_tokens", "registry_credentials", "image_specs", "build_jobs", "log_chunks"} <= tables
            with engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
        finally:
            engine.dispose()
    finally:
        drop_scratch_database(uri)
