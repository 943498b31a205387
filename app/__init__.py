"""Image Builder: an application factory with one blueprint per feature."""
import os

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

import config as app_config

from .extensions import csrf, db, login_manager, migrate


def create_app(test_config=None):
    app = Flask(
        __name__,
        instance_path=str(app_config.INSTANCE_DIR),
        template_folder="../templates",
        static_folder="../static",
    )
    app.config.from_object(app_config.Config)
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = app_config.resolve_secret_key()
    from .auth.service import check_hash_method

    check_hash_method(app.config["PASSWORD_HASH_METHOD"])
    os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app_config.BASE_DIR / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)

    from . import models  # noqa: F401  (registers the tables with the metadata)
    from .api import bp as api_bp
    from .audit import bp as audit_bp
    from .auth import bp as auth_bp
    from .auth.cli import register_cli
    from .credentials import bp as credentials_bp
    from .specs import bp as specs_bp
    from .builds import bp as builds_bp
    from .builds.cache import register_cli as register_cache_cli
    from .builds.maintenance import register_cli as register_maintenance_cli
    from .revisions.pages import bp as revision_pages_bp
    from .auth.throttle import register_throttle
    from .params import register_params
    from .security import register_security
    from .ui import register_ui
    from .i18n import register_i18n
    from .ops import register_ops
    from .ops.logging import configure_logging
    from . import notify  # noqa: F401  (webhooks: the activated event)
    from .watch import cascade  # noqa: F401  (children rebuild when their parent's active revision changes)

    register_params(app)
    register_security(app)
    register_throttle(app)
    app.register_blueprint(auth_bp)
    app.register_blueprint(specs_bp)
    app.register_blueprint(builds_bp)
    app.register_blueprint(revision_pages_bp)
    app.register_blueprint(credentials_bp, url_prefix="/credentials")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(audit_bp)
    register_cli(app)
    register_maintenance_cli(app)
    register_cache_cli(app)
    register_ui(app)
    register_i18n(app)
    register_ops(app)

    configure_logging(app)
    return app


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """SQLite: enforce foreign keys (cascades) and let readers and the writer overlap."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()
