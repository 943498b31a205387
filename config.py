"""Settings, read from the environment with defaults that work on a fresh machine.

Every setting here can be overridden by an environment variable of the same name,
so the web and worker processes can be started by hand against existing services.
"""
import os
import pwd
import socket
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

    # Request bodies above this are refused (413) before they are read.
    MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH", str(1024 * 1024)))
    # Lines per package field of a spec (app/specs/validation.py).
    MAX_PACKAGE_LINES = int(os.environ.get("MAX_PACKAGE_LINES", "300"))

    # Signed-in sessions end after this long without a request (app/security.py).
    SESSION_IDLE_MINUTES = int(os.environ.get("SESSION_IDLE_MINUTES", "720"))
    # Failed sign-ins (and bad API tokens, per address) allowed within the window before
    # 429 (app/auth/throttle.py). Counters live in Redis under THROTTLE_KEY_PREFIX.
    SIGNIN_FAILURES_PER_USER = int(os.environ.get("SIGNIN_FAILURES_PER_USER", "5"))
    SIGNIN_FAILURES_PER_ADDRESS = int(os.environ.get("SIGNIN_FAILURES_PER_ADDRESS", "20"))
    SIGNIN_FAILURE_WINDOW_MINUTES = int(os.environ.get("SIGNIN_FAILURE_WINDOW_MINUTES", "15"))
    THROTTLE_KEY_PREFIX = os.environ.get("THROTTLE_KEY_PREFIX", "imagebuilder")

    # How passwords are hashed: a werkzeug method string. werkzeug's scrypt by default
    # (~0.2 s a hash here); the test suite sets a cheap pbkdf2 so its sign-ins take no minutes.
    PASSWORD_HASH_METHOD = os.environ.get("PASSWORD_HASH_METHOD", "scrypt")

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
    # The layer cache shared by every build host through the registry (app/builds/cache.py):
    # registry (push to and look up in BUILD_CACHE_REPO), local (this host's layers only)
    # or off (no layer cache at all). Tags no build used for BUILD_CACHE_KEEP_DAYS are pruned.
    BUILD_CACHE = os.environ.get("BUILD_CACHE", "registry").strip().lower()
    # Unset: <REGISTRY>/imagebuilder-cache.
    BUILD_CACHE_REPO = (os.environ.get("BUILD_CACHE_REPO") or "").rstrip("/") or None
    BUILD_CACHE_KEEP_DAYS = float(os.environ.get("BUILD_CACHE_KEEP_DAYS", "14"))
    # Each build host pulls, while it has no build to run, the cached layers other hosts
    # built for the newest BUILD_CACHE_PREFETCH_SPECS active revisions, checking every
    # BUILD_CACHE_PREFETCH_INTERVAL seconds (app/builds/prefetch.py).
    BUILD_CACHE_PREFETCH = _bool("BUILD_CACHE_PREFETCH", True)
    BUILD_CACHE_PREFETCH_INTERVAL = int(os.environ.get("BUILD_CACHE_PREFETCH_INTERVAL", "60"))
    BUILD_CACHE_PREFETCH_SPECS = int(os.environ.get("BUILD_CACHE_PREFETCH_SPECS", "20"))
    # How this build host is named in the log ("built on <name> for r4"); the machine's name.
    BUILD_HOST_NAME = os.environ.get("BUILD_HOST_NAME") or socket.gethostname()
    BUILD_TIMEOUT = int(os.environ.get("BUILD_TIMEOUT", "3600"))
    # How long the spec's test command may run in the built image before it fails the job.
    TEST_TIMEOUT = int(os.environ.get("TEST_TIMEOUT", "300"))
    LOG_MAX_BYTES = int(os.environ.get("LOG_MAX_BYTES", str(20 * 1024 * 1024)))
    # How long the log writer may hold lines before it writes a chunk.
    LOG_FLUSH_SECONDS = float(os.environ.get("LOG_FLUSH_SECONDS", "0.5"))
    # ... and while someone reads it live (app/builds/livelog.py).
    LOG_LIVE_FLUSH_SECONDS = float(os.environ.get("LOG_LIVE_FLUSH_SECONDS", "0.05"))
    # How long the log endpoint holds a viewer's request waiting for new lines, and how
    # many such requests each web process lets wait at once (keep it below gunicorn's
    # --threads, so pages are still answered while every slot is taken).
    LOG_WAIT_SECONDS = float(os.environ.get("LOG_WAIT_SECONDS", "20"))
    LOG_WAIT_SLOTS = int(os.environ.get("LOG_WAIT_SLOTS", "24"))
    # How many log requests of a web process look in the database and render at once (the
    # rest sleep their turn, so pages share the interpreter with only these few), and how
    # many log answers a web process sends a second at most, shared out in arrival order
    # (0: no limit). Past it, viewers get their new lines batched; pages stay quick.
    LOG_ANSWER_SLOTS = int(os.environ.get("LOG_ANSWER_SLOTS", "1"))
    LOG_ANSWER_RATE = float(os.environ.get("LOG_ANSWER_RATE", "30"))

    RQ_DASHBOARD_REDIS_URL = REDIS_URL

    # Operations (app/ops): the reconciler, retention and readiness checks.
    # A running job whose heartbeat is older than this is failed as "worker lost".
    HEARTBEAT_TIMEOUT = int(os.environ.get("HEARTBEAT_TIMEOUT", "60"))
    RECONCILE_INTERVAL = int(os.environ.get("RECONCILE_INTERVAL", "15"))
    PRUNE_INTERVAL = int(os.environ.get("PRUNE_INTERVAL", "3600"))
    JOB_RETENTION_COUNT = int(os.environ.get("JOB_RETENTION_COUNT", "50"))
    FAILED_LOG_RETENTION_DAYS = int(os.environ.get("FAILED_LOG_RETENTION_DAYS", "14"))
    # Audit rows (app/audit) older than this are pruned with the jobs.
    AUDIT_RETENTION_DAYS = int(os.environ.get("AUDIT_RETENTION_DAYS", "365"))
    READINESS_TIMEOUT = float(os.environ.get("READINESS_TIMEOUT", "2"))
    # Build images in the build host's Podman storage (app/builds/maintenance.py): per
    # spec the images of its newest IMAGE_KEEP_RECENT jobs stay, older ones are removed
    # every IMAGE_PRUNE_INTERVAL seconds, untagged layers once IMAGE_DANGLING_KEEP_HOURS old.
    IMAGE_KEEP_RECENT = int(os.environ.get("IMAGE_KEEP_RECENT", "3"))
    IMAGE_PRUNE_INTERVAL = int(os.environ.get("IMAGE_PRUNE_INTERVAL", "3600"))
    IMAGE_DANGLING_KEEP_HOURS = float(os.environ.get("IMAGE_DANGLING_KEEP_HOURS", "24"))
    # Base-image watch (app/watch/base_check.py): a round every BASE_CHECK_INTERVAL seconds
    # (jittered by 10%), at most BASE_CHECK_HOST_CONCURRENCY requests in flight and
    # BASE_CHECK_HOST_RATE requests a second per registry host.
    BASE_CHECK_INTERVAL = int(os.environ.get("BASE_CHECK_INTERVAL", str(6 * 3600)))
    BASE_CHECK_HOST_CONCURRENCY = int(os.environ.get("BASE_CHECK_HOST_CONCURRENCY", "4"))
    BASE_CHECK_HOST_RATE = float(os.environ.get("BASE_CHECK_HOST_RATE", "10"))
    # Webhooks (app/notify.py). PUBLIC_URL is where people open the app (job links).
    NOTIFY_WEBHOOK_URL = os.environ.get("NOTIFY_WEBHOOK_URL") or None
    NOTIFY_EVENTS = _list("NOTIFY_EVENTS") if os.environ.get("NOTIFY_EVENTS") else ("failed", "base-changed")
    NOTIFY_TIMEOUT = float(os.environ.get("NOTIFY_TIMEOUT", "5"))
    NOTIFY_RETRY_INTERVALS = tuple(int(v) for v in _list("NOTIFY_RETRY_INTERVALS")) if os.environ.get(
        "NOTIFY_RETRY_INTERVALS") else (10, 60, 300)
    PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000")


def resolve_secret_key():
    return _secret_key()
