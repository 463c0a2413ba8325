"""Django settings. Everything that differs between machines comes from the environment.

Embedded defaults (no variables set): SQLite and media files under ``var/``, Celery on kombu's
filesystem transport (no broker server), models from ``FACEAUDIT_MODEL_DIR``.
Production-like (docker-compose.yml): ``DATABASE_URL=postgresql://...``,
``CELERY_BROKER_URL=redis://...``, ``FACEAUDIT_SECRET_KEY``, ``FACEAUDIT_DEBUG=0``.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import dj_database_url
import plotly

from webapp.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FACEAUDIT_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("FACEAUDIT_DEBUG", False)
PRODUCTION = env_bool("FACEAUDIT_PRODUCTION", False)


def _secret_key() -> str:
    key = env_str("FACEAUDIT_SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("FACEAUDIT_SECRET_KEY must be set when FACEAUDIT_PRODUCTION=1")
    # Embedded mode: one random key per installation, kept beside the database.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("FACEAUDIT_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("FACEAUDIT_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "webapp.audits",
]

MIDDLEWARE = [
    # Outermost, so that X-Frame-Options is also on what the middleware below answers by
    # itself: static files (whitenoise) and the 400 for a disallowed Host header.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "webapp.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.audits.model_status.banner",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'faceaudit.sqlite3'}",
        conn_max_age=env_int("FACEAUDIT_DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker write concurrently: WAL lets readers proceed during a
    # write, IMMEDIATE transactions avoid lock-upgrade deadlocks, the timeout waits out writers.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file (not in-memory) test database, so that a worker process can share it in tests.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-faceaudit.sqlite3")}
else:
    # One test database per checkout and var folder: two checkouts (or two test runs with their
    # own FACEAUDIT_VAR_DIR) testing on one server do not collide.
    import hashlib

    _checkout = hashlib.sha256(f"{BASE_DIR}|{VAR_DIR}".encode()).hexdigest()[:8]
    DATABASES["default"]["TEST"] = {"NAME": f"test_faceaudit_{_checkout}"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# Sign-in throttle (webapp.audits.signin): after this many failed sign-ins within the window
# (seconds) for one account or from one client address, sign-in is refused, the right password
# included, until the oldest of them has left the window. Behind a reverse proxy
# (FACEAUDIT_BEHIND_TLS_PROXY=1) the client address is the one it appends to X-Forwarded-For.
FACEAUDIT_SIGNIN_MAX_FAILURES = env_int("FACEAUDIT_SIGNIN_MAX_FAILURES", 5)
FACEAUDIT_SIGNIN_WINDOW = env_int("FACEAUDIT_SIGNIN_WINDOW", 900)
FACEAUDIT_SIGNIN_TRUST_FORWARDED_FOR = PRODUCTION and env_bool("FACEAUDIT_BEHIND_TLS_PROXY", False)
LOGIN_REDIRECT_URL = "audits:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# plotly.js is served from the plotly Python package: no CDN, works offline.
STATICFILES_DIRS = [("plotly", Path(plotly.__file__).parent / "package_data")]
WHITENOISE_USE_FINDERS = True

MEDIA_ROOT = Path(env_str("FACEAUDIT_MEDIA_ROOT") or VAR_DIR / "media")
MEDIA_URL = "media/"  # never served directly: downloads go through views that check ownership
STORAGES = {
    "default": {"BACKEND": env_str("FACEAUDIT_STORAGE_BACKEND",
                                   "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Object storage, for workers on several machines that share no disk: with FACEAUDIT_S3_BUCKET
# set, every image, table, export member and built page is kept in that bucket of an
# S3-compatible server (SeaweedFS in docker-compose and the tests, or AWS S3, MinIO, ...)
# instead of MEDIA_ROOT. Every process of the installation (web app and workers) needs the same
# values. See README, "Several machines".
S3_BUCKET = env_str("FACEAUDIT_S3_BUCKET")
if S3_BUCKET:
    from botocore.config import Config as _S3Config

    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": S3_BUCKET,
        "endpoint_url": env_str("FACEAUDIT_S3_ENDPOINT_URL"),  # None: AWS S3 itself
        "access_key": env_str("FACEAUDIT_S3_ACCESS_KEY_ID"),
        "secret_key": env_str("FACEAUDIT_S3_SECRET_ACCESS_KEY"),
        "region_name": env_str("FACEAUDIT_S3_REGION", "us-east-1"),
        "location": env_str("FACEAUDIT_S3_PREFIX", ""),  # key prefix inside the bucket
        "addressing_style": "path",  # bucket in the path: works with any endpoint host name
        "signature_version": "s3v4",
        "file_overwrite": True,  # a rerun overwrites a cell's file under its own name
        "querystring_auth": False,  # files are served through the views, never by URL
        "default_acl": None,
        # A store that is briefly unreachable (restart, failover) is waited out inside each
        # call: up to 10 attempts with capped exponential back-off (about a minute); beyond
        # that the worker task retries (worker.state.TRANSIENT_ERRORS).
        "client_config": _S3Config(retries={"max_attempts": 10, "mode": "standard"},
                                   connect_timeout=5, read_timeout=60),
    }}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("FACEAUDIT_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # Behind TLS (the usual lab set-up: a reverse proxy in front of gunicorn).
    SECURE_HSTS_SECONDS = env_int("FACEAUDIT_HSTS_SECONDS", 0)
    SECURE_SSL_REDIRECT = env_bool("FACEAUDIT_SSL_REDIRECT", False)
    if env_bool("FACEAUDIT_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- FaceAudit -------------------------------------------------------------------------------
FACEAUDIT_MODEL_DIR = Path(env_str("FACEAUDIT_MODEL_DIR") or VAR_DIR / "models")
# Seconds per image on 2 CPU cores for the default generator + scoring, measured with
# bench/ (used only for the form's run-time estimate).
FACEAUDIT_SECONDS_PER_IMAGE = float(env_str("FACEAUDIT_SECONDS_PER_IMAGE") or 0.05)
# Images one account may have planned in audits not yet finished (queued or running); an
# audit beyond that is refused until earlier ones finish (webapp.audits.launch). The default
# is one audit of the largest allowed design (generator.config.MAX_IMAGES); 0: no cap.
FACEAUDIT_MAX_QUEUED_IMAGES_PER_USER = env_int("FACEAUDIT_MAX_QUEUED_IMAGES_PER_USER", 100_000)
FACEAUDIT_GENERATE_BATCH = env_int("FACEAUDIT_GENERATE_BATCH", 16)  # identities per gpu task
FACEAUDIT_SCORE_BATCH = env_int("FACEAUDIT_SCORE_BATCH", 128)  # images per cpu task
FACEAUDIT_TORCH_DEVICE = env_str("FACEAUDIT_TORCH_DEVICE", "cpu")
# Derived data a worker can rebuild (learned latent directions), per machine.
FACEAUDIT_CACHE_DIR = Path(env_str("FACEAUDIT_CACHE_DIR") or VAR_DIR / "cache")
# The identity judge: the FR model that says whether an edit kept identity. Never a model under
# test nor the one that conditions a diffusion generator (worker.runtime.choose_identity_judge);
# "auto" picks dlib's ResNet, else MobileFaceNet, else an insightface pack, whichever is not
# under test. A model named here is used when it qualifies, otherwise another one is (and the
# audit says so).
FACEAUDIT_DRIFT_MODEL = env_str("FACEAUDIT_DRIFT_MODEL", "auto")
FACEAUDIT_DIRECTION_SAMPLES = env_int("FACEAUDIT_DIRECTION_SAMPLES", 3000)
# Diffusion generators this installation has weights for (none by default; no hub access is
# assumed). JSON: generator name -> options, e.g.
#   {"sd15-faceid": {"base_model": "stable-diffusion-v1-5/stable-diffusion-v1-5",
#                    "adapter": "h94/IP-Adapter-FaceID",
#                    "weight_name": "ip-adapter-faceid_sd15.bin",
#                    "base_revision": "<commit>", "adapter_revision": "<commit>",
#                    "steps": 30, "size": 512}}
# Hub ids or local folders; each repository pinned by its own revision (base_revision,
# adapter_revision or arc2face_revision; a single "revision" is refused). The identity model
# is the one the route was trained on (buffalo_l for FaceID, Arc2Face's own ArcFace for
# Arc2Face; another is refused) and is never used to judge identity drift.
# `python manage.py check_diffusion` checks every configured route.
try:
    FACEAUDIT_DIFFUSION = json.loads(env_str("FACEAUDIT_DIFFUSION") or "{}")
except json.JSONDecodeError as exc:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"FACEAUDIT_DIFFUSION is not valid JSON: {exc}") from None
# An unfinished audit whose workers have stored nothing for this many seconds is shown as
# stalled, with a Retry button that re-sends its unfinished work (worker.pipeline.resume).
# Longer than any one task takes to report (a generation or scoring batch, a statistics run).
FACEAUDIT_STALLED_AFTER = env_int("FACEAUDIT_STALLED_AFTER", 900)
# Analyzer instances run side by side when checking generated images (0: one per CPU core
# of this worker process's share, see worker.runtime.cores_per_process).
FACEAUDIT_SENSE_THREADS = env_int("FACEAUDIT_SENSE_THREADS", 0)
# onnxruntime threads per scoring analyzer (0: the CPU cores divided among the worker's
# processes; onnxruntime's own choice in a single-process worker). Two prefork processes on
# 2 cores each running onnxruntime's default 2 spinning threads scored at about half the
# rate of single-threaded ones (bench/bench_scoring.py).
FACEAUDIT_SCORE_THREADS = env_int("FACEAUDIT_SCORE_THREADS", 0)

# --- Celery (read by worker.celery_app with namespace="CELERY") ----------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_TASK_SOFT_TIME_LIMIT = env_int("FACEAUDIT_TASK_SOFT_TIME_LIMIT", 3600)
CELERY_TASK_TIME_LIMIT = env_int("FACEAUDIT_TASK_TIME_LIMIT", 3900)
# Redis: a task taken by a worker that died before acknowledging it is handed out again this
# many seconds after it was taken. It must exceed the hard time limit, or a task that is still
# running would be handed to a second worker (harmless, as every stage is idempotent, but
# wasted work). Abandoned tasks are looked for every FACEAUDIT_RESTORE_INTERVAL seconds.
FACEAUDIT_VISIBILITY_TIMEOUT = env_int("FACEAUDIT_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 300)
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": FACEAUDIT_VISIBILITY_TIMEOUT,
        "unacked_restore_interval": env_int("FACEAUDIT_RESTORE_INTERVAL", 10),
        "unacked_restore_throttle": 1,
    }
# A task whose pool process is killed (out of memory, SIGKILL) goes back to the queue.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True  # state lives on the Audit row, not in a result backend
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ROUTES = {
    "worker.tasks.sample_identities": {"queue": "gpu"},
    "worker.tasks.generate_images": {"queue": "gpu"},
    "worker.tasks.*": {"queue": "cpu"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("FACEAUDIT_LOG_LEVEL", "INFO")},
}
