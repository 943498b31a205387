"""Settings, read from the environment with defaults that work on a fresh machine.

Every setting here can be overridden by an environment variable of the same name,
so the web and worker processes can be started by hand against existing services.
"""
import os
import pwd
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_PATH", BASE_DIR / "instance"))


def _bool(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _list(name):
    """A comma- or whitespace-separated list setting."""
    raw = os.environ.get(name, "")
    return [item for item in raw.replace(",", " ").split() if item]


def _database_url():
    url = os.environ.get("DATABASE_URL")
    if not url:
        return f"sqlite:///{INSTANCE_DIR / 'imagebuilder.db'}"
    # Heroku-style URLs say postgres://, which SQLAlchemy no longer accepts.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _default_podman_url():
    """The rootless Podman service of the build user that scripts/podman-rootless.sh sets up."""
    user = os.environ.get("BUILD_USER", "imagebuilder")
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        uid = os.getuid()
    return f"unix:///run/user/{uid}/podman/podman.sock"


def _secret_key():
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    # A per-install key kept in the instance folder, so sessions survive restarts
    # without anybody having to invent a secret for a development setup.
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(os.urandom(32).hex())
    return path.read_text().strip()


class Config:
    SECRET_KEY = None  # resolved in create_app so importing config never writes files
    SQLALCHEMY_DATABASE_URI = _database_url()
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    RQ_QUEUE = os.environ.get("RQ_QUEUE", "builds")

    # Key that encrypts registry passwords at rest (Fernet, urlsafe base64).
    # Unset: a key file in the instance folder, created on first use.
    CREDENTIALS_KEY = os.environ.get("CREDENTIALS_KEY")

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", False)
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None

    # Builds
    PODMAN_URL = os.environ.get("PODMAN_URL") or _default_podman_url()
    REGISTRY = os.environ.get("REGISTRY", "127.0.0.1:5000/imagebuilder").rstrip("/")
    REGISTRY_USERNAME = os.environ.get("REGISTRY_USERNAME") or None
    REGISTRY_PASSWORD = os.environ.get("REGISTRY_PASSWORD") or None
    REGISTRY_TLS_VERIFY = _bool("REGISTRY_TLS_VERIFY", True)
    REGISTRY_PUSH_LATEST = _bool("REGISTRY_PUSH_LATEST", True)
    BUILD_CA_BUNDLE = os.environ.get("BUILD_CA_BUNDLE") or None
    PIP_INDEX_URL = os.environ.get("PIP_INDEX_URL") or None
    PIP_EXTRA_INDEX_URLS = _list("PIP_EXTRA_INDEX_URLS")
    CONDA_ALLOWED_CHANNELS = _list("CONDA_ALLOWED_CHANNELS")
    BUILD_TIMEOUT = int(os.environ.get("BUILD_TIMEOUT", "3600"))
    LOG_MAX_BYTES = int(os.environ.get("LOG_MAX_BYTES", str(20 * 1024 * 1024)))
    # How long the log writer may hold lines before it writes a chunk.
    LOG_FLUSH_SECONDS = float(os.environ.get("LOG_FLUSH_SECONDS", "0.5"))

    RQ_DASHBOARD_REDIS_URL = REDIS_URL

    # Operations (app/ops): the reconciler, retention and readiness checks.
    # A running job whose heartbeat is older than this is failed as "worker lost".
    HEARTBEAT_TIMEOUT = int(os.environ.get("HEARTBEAT_TIMEOUT", "60"))
    RECONCILE_INTERVAL = int(os.environ.get("RECONCILE_INTERVAL", "15"))
    PRUNE_INTERVAL = int(os.environ.get("PRUNE_INTERVAL", "3600"))
    JOB_RETENTION_COUNT = int(os.environ.get("JOB_RETENTION_COUNT", "50"))
    FAILED_LOG_RETENTION_DAYS = int(os.environ.get("FAILED_LOG_RETENTION_DAYS", "14"))
    READINESS_TIMEOUT = float(os.environ.get("READINESS_TIMEOUT", "2"))
    # Build images in the build host's Podman storage (app/builds/maintenance.py): per
    # spec the images of its newest IMAGE_KEEP_RECENT jobs stay, older ones are removed
    # every IMAGE_PRUNE_INTERVAL seconds, untagged layers once IMAGE_DANGLING_KEEP_HOURS old.
    IMAGE_KEEP_RECENT = int(os.environ.get("IMAGE_KEEP_RECENT", "3"))
    IMAGE_PRUNE_INTERVAL = int(os.environ.get("IMAGE_PRUNE_INTERVAL", "3600"))
    IMAGE_DANGLING_KEEP_HOURS = float(os.environ.get("IMAGE_DANGLING_KEEP_HOURS", "24"))


def resolve_secret_key():
    return _secret_key()
