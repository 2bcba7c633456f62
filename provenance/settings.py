"""Settings, all from the environment. Embedded defaults need no server: SQLite and a filesystem broker.

Environment variables (see README "Configuration"):
  PROVENANCE_DEBUG, PROVENANCE_DEMO, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL, CELERY_BROKER_URL,
  PROVENANCE_DATA_DIR, PROVENANCE_FERNET_KEY, PROVENANCE_HTTP_TIMEOUT, PROVENANCE_HTTP_RETRIES,
  PROVENANCE_SCAN_CONCURRENCY, PROVENANCE_RESCAN_INTERVAL, PROVENANCE_SIGSTORE_TUF,
  PROVENANCE_ALLOW_PRIVATE_REGISTRIES, PROVENANCE_REDIRECT_HOSTS, PROVENANCE_MAX_*, PROVENANCE_LAYOUT_DIRS.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from err


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("PROVENANCE_DEBUG")
DEMO = env_bool("PROVENANCE_DEMO")
TESTING = env_bool("PROVENANCE_TESTING")

DATA_DIR = Path(os.environ.get("PROVENANCE_DATA_DIR") or BASE_DIR / "var")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if DEBUG or DEMO or TESTING:
        SECRET_KEY = "insecure-local-only-secret-key-never-use-in-production"  # noqa: S105 - debug/demo/tests only
    else:
        raise ImproperlyConfigured("SECRET_KEY is required unless PROVENANCE_DEBUG or PROVENANCE_DEMO is set")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "template_partials",
    "django_htmx",
    "provenance.accounts",
    "provenance.trust",
    "provenance.sources",
    "provenance.artifacts",
    "provenance.policies",
    "provenance.gitsources",
    "provenance.monitor",
    "provenance.compliance",
    "provenance.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "provenance.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "provenance.accounts.middleware.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "provenance.urls"
WSGI_APPLICATION = "provenance.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]

# Database: SQLite (WAL, busy timeout, immediate transactions) unless DATABASE_URL is set.
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
    DATABASES["default"]["OPTIONS"] = {"connect_timeout": 10}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "provenance.sqlite3",
            "OPTIONS": {
                # WAL lets the worker write while the web process reads; IMMEDIATE takes the write lock at
                # BEGIN so two writers queue on the busy timeout instead of failing with "database is locked".
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # A file, not :memory:, so that a real worker process in integration tests sees the same data.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
if os.environ.get("PROVENANCE_DB_NAME"):
    # Integration tests point a worker process at the test database pytest-django created.
    DATABASES["default"]["NAME"] = os.environ["PROVENANCE_DB_NAME"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# A shared cache (login rate limits) when several web processes run: PROVENANCE_CACHE_URL=redis://host:6379/1.
CACHES = (
    {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                 "LOCATION": os.environ["PROVENANCE_CACHE_URL"]}}
    if os.environ.get("PROVENANCE_CACHE_URL")
    else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
)

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
AUTHENTICATION_BACKENDS = ["provenance.accounts.backends.RateLimitedModelBackend"]
# Failed logins: this many per username or client address within the window (seconds), then refused until it ends.
PROVENANCE_LOGIN_ATTEMPTS = env_int("PROVENANCE_LOGIN_ATTEMPTS", 10)
PROVENANCE_LOGIN_WINDOW = env_int("PROVENANCE_LOGIN_WINDOW", 900)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or DATA_DIR / "staticfiles")
WHITENOISE_USE_FINDERS = DEBUG or DEMO or TESTING  # serve static/ directly when collectstatic has not run

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("PROVENANCE_SECURE_COOKIES", not (DEBUG or DEMO or TESTING))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
BEHIND_PROXY = env_bool("PROVENANCE_BEHIND_PROXY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
# Web hardening. CSP: see provenance/security.py. HSTS is sent on HTTPS requests only (behind a proxy: those it
# marks X-Forwarded-Proto: https), for a year when cookies are Secure; the host's subdomains included.
PROVENANCE_CSP = os.environ.get("PROVENANCE_CSP") or (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PROVENANCE_CSP_DOCS = PROVENANCE_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")  # Swagger UI
SECURE_HSTS_SECONDS = env_int("PROVENANCE_HSTS_SECONDS", 31_536_000 if SESSION_COOKIE_SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("PROVENANCE_HSTS_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("PROVENANCE_HSTS_PRELOAD", True)
SECURE_REFERRER_POLICY = "same-origin"
# Redirect HTTP to HTTPS here only when this process can tell them apart (behind a proxy that says so); without
# PROVENANCE_BEHIND_PROXY, TLS and its redirect are the front proxy's, and a redirect here would loop.
SECURE_SSL_REDIRECT = env_bool("PROVENANCE_SSL_REDIRECT", SESSION_COOKIE_SECURE and BEHIND_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container health check speaks plain HTTP on loopback
SILENCED_SYSTEM_CHECKS = [] if SECURE_SSL_REDIRECT or not SESSION_COOKIE_SECURE else ["security.W008"]

# Celery: a filesystem broker needs no server; CELERY_BROKER_URL switches to Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("PROVENANCE_CELERY_QUEUE", "provenance")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 600
CELERY_TASK_TIME_LIMIT = 660
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE = {
    "refetch-git-sources": {"task": "provenance.gitsources.tasks.refetch_git_sources", "schedule": 300.0},
    "sweep-stuck-git-fetches": {"task": "provenance.gitsources.tasks.sweep_stuck_fetches", "schedule": 300.0},
    "sweep-stuck-scans": {"task": "provenance.sources.tasks.sweep_stuck_scans", "schedule": 300.0},
    "refresh-trust-roots": {"task": "provenance.trust.tasks.refresh_trust_roots", "schedule": 86400.0},
    "reevaluate-trust": {"task": "provenance.policies.tasks.scheduled_reevaluation", "schedule": 86400.0},
    "sweep-stuck-reevaluations": {"task": "provenance.policies.tasks.sweep_stuck_reevaluations", "schedule": 900.0},
    "rescan-sources": {"task": "provenance.sources.tasks.rescan_sources", "schedule": 300.0},
    "monitor-follow-logs": {"task": "provenance.monitor.tasks.follow_logs", "schedule": 60.0},
    "monitor-send-deliveries": {"task": "provenance.monitor.tasks.send_deliveries", "schedule": 60.0},
    "monitor-trust-roots": {"task": "provenance.monitor.tasks.check_trust_roots", "schedule": 86400.0},
}

# Sigstore: refresh the public-good and staging trust roots over TUF (fails safe offline: the stored root stays).
PROVENANCE_SIGSTORE_TUF = env_bool("PROVENANCE_SIGSTORE_TUF", True)

# Registry access
PROVENANCE_HTTP_TIMEOUT = env_int("PROVENANCE_HTTP_TIMEOUT", 15)
PROVENANCE_HTTP_RETRIES = env_int("PROVENANCE_HTTP_RETRIES", 3)
PROVENANCE_SCAN_CONCURRENCY = env_int("PROVENANCE_SCAN_CONCURRENCY", 8)  # images looked at at once, per scan task
# Monitoring: how long an unknown signature by a watched identity waits for a scan before it alerts (seconds), how
# long a log reader holds its claim (seconds), how early a trust root's expiry is announced (days).
PROVENANCE_MONITOR_GRACE = env_int("PROVENANCE_MONITOR_GRACE", 1800)
PROVENANCE_MONITOR_CLAIM_SECONDS = env_int("PROVENANCE_MONITOR_CLAIM_SECONDS", 120)
PROVENANCE_MONITOR_EXPIRY_DAYS = env_int("PROVENANCE_MONITOR_EXPIRY_DAYS", 30)
# Alert e-mail: Django's mail settings from the environment (console output when no host is set).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if os.environ.get("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "provenance@localhost")

# Git sources: the time (seconds) and size (bytes) one fetch may take.
PROVENANCE_GIT_TIMEOUT = env_int("PROVENANCE_GIT_TIMEOUT", 300)
PROVENANCE_GIT_MAX_BYTES = env_int("PROVENANCE_GIT_MAX_BYTES", 2 * 1024**3)
# A scan of more targets than this is split into chunks of this many, done by worker tasks in parallel.
PROVENANCE_SCAN_CHUNK = env_int("PROVENANCE_SCAN_CHUNK", 200)
PROVENANCE_RESCAN_INTERVAL = env_int("PROVENANCE_RESCAN_INTERVAL", 3600)  # seconds between scheduled scans
PROVENANCE_FERNET_KEY = os.environ.get("PROVENANCE_FERNET_KEY", "")
PROVENANCE_ADMISSION_UNKNOWN = os.environ.get("PROVENANCE_ADMISSION_UNKNOWN", "deny")  # or allow (and queue a scan)
PROVENANCE_ADMISSION_TAGS = os.environ.get("PROVENANCE_ADMISSION_TAGS", "resolve")  # or deny (digests only)


def env_limit(name: str, default: int) -> int:
    """A positive integer limit (a budget), for the PROVENANCE_MAX_* settings."""
    value = env_int(name, default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be a positive integer, not {value}")
    return value


# Hardening against a hostile registry (README "Limits and egress"). Egress: registries on loopback, private or
# link-local addresses are refused unless allowed (on in debug, demo and tests, whose registries are local);
# redirects leave a registry's origin only for these hosts (fnmatch patterns): the blob storage of the big
# public registries.
PROVENANCE_ALLOW_PRIVATE_REGISTRIES = env_bool("PROVENANCE_ALLOW_PRIVATE_REGISTRIES", DEBUG or DEMO or TESTING)
PROVENANCE_REDIRECT_HOSTS = env_list("PROVENANCE_REDIRECT_HOSTS", [
    "production.cloudflare.docker.com",  # Docker Hub
    "pkg-containers.githubusercontent.com",  # GHCR
    "*.s3.amazonaws.com", "*.s3.*.amazonaws.com",  # ECR, and registries on S3 storage
    "storage.googleapis.com", "*.storage.googleapis.com",  # GCR, Artifact Registry
    "*.blob.core.windows.net",  # ACR
    "cdn.quay.io", "cdn*.quay.io",  # Quay
])
# Budgets: a scan that hits one stops that image (or the listing) with a stored reason naming the limit.
PROVENANCE_MAX_TAGS = env_limit("PROVENANCE_MAX_TAGS", 100_000)  # tags read from one repository listing
PROVENANCE_MAX_PAGES = env_limit("PROVENANCE_MAX_PAGES", 1_000)  # pages of one tag or referrers listing
PROVENANCE_MAX_REFERRERS = env_limit("PROVENANCE_MAX_REFERRERS", 128)  # referrers read per manifest
PROVENANCE_MAX_LAYERS = env_limit("PROVENANCE_MAX_LAYERS", 64)  # layers read per evidence manifest
PROVENANCE_MAX_IMAGE_BYTES = env_limit("PROVENANCE_MAX_IMAGE_BYTES", 128 * 1024**2)  # fetched per image
PROVENANCE_MAX_SCAN_BYTES = env_limit("PROVENANCE_MAX_SCAN_BYTES", 8 * 1024**3)  # per scan (per chunk when split)
PROVENANCE_MAX_IMAGE_SECONDS = env_limit("PROVENANCE_MAX_IMAGE_SECONDS", 180)  # wall time for one image
PROVENANCE_MAX_REQUEST_SECONDS = env_limit("PROVENANCE_MAX_REQUEST_SECONDS", 60)  # one answer, however trickled
# Wall time of one scan task (a small scan, or one chunk of a large one): the images not reached by then are
# stopped with a stored reason, so that the task ends before its time limit instead of being killed and swept.
PROVENANCE_MAX_SCAN_SECONDS = env_limit("PROVENANCE_MAX_SCAN_SECONDS", max(60, CELERY_TASK_SOFT_TIME_LIMIT - 120))
# OCI-layout sources only below these directories (none in production unless set; the demo's in demo/debug).
PROVENANCE_LAYOUT_DIRS = env_list("PROVENANCE_LAYOUT_DIRS", (
    [str(DATA_DIR / "demo")] if DEBUG or DEMO else []) + ([str(DATA_DIR), tempfile.gettempdir()] if TESTING else []))
# A scan still pending after this many seconds lost its broker message and is sent again.
PROVENANCE_PENDING_SCAN_TIMEOUT = env_limit("PROVENANCE_PENDING_SCAN_TIMEOUT", 900)

def env_rate(name: str, default: str) -> str:
    """A request rate such as ``100/minute`` (per second, minute, hour or day), for the API's throttles."""
    value = (os.environ.get(name) or default).strip()
    count, _, period = value.partition("/")
    if not count.isdigit() or period not in {"second", "minute", "hour", "day", "s", "m", "h", "d"}:
        raise ImproperlyConfigured(f"{name} must be a rate like 100/minute (second, minute, hour, day), not {value!r}")
    return value


REST_FRAMEWORK = {
    # The first class answers 401 with `WWW-Authenticate: Bearer`; a session needs CSRF on every change.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "provenance.accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # Every view declares what it needs (accounts.permissions.needs); the default is the strictest.
    "DEFAULT_PERMISSION_CLASSES": ["provenance.accounts.permissions.AdminOnly"],
    # Small lists: limit/offset with a count; the large ones (artifacts, scans, audit, tag history) declare a
    # keyset cursor (provenance.api.pagination).
    "DEFAULT_PAGINATION_CLASS": "provenance.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "provenance.api.schema.ApiSchema",
    "EXCEPTION_HANDLER": "provenance.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "provenance.api.throttling.AnonThrottle",
        "provenance.api.throttling.UserThrottle",
        "provenance.api.throttling.TokenWriteThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_rate("PROVENANCE_API_ANON_RATE", "300/minute"),
        "user": env_rate("PROVENANCE_API_RATE", "6000/hour"),
        "token_write": env_rate("PROVENANCE_API_WRITE_RATE", "1200/hour"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Provenance API",
    "DESCRIPTION": "Signatures and attestations of container images, verified; policies and their verdicts. "
                   "Authenticate with a session or `Authorization: Bearer prv_…`. Errors are "
                   '`{"error": "<code>", "detail": "…"}`.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page's JavaScript and CSS are served from the vendored drf-spectacular-sidecar (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "VerificationStatusEnum": "provenance.artifacts.models.TrustStatus",
        "PolicyStatusEnum": "provenance.policies.models.Status",
        "ScanStateEnum": "provenance.sources.models.Scan.State",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("PROVENANCE_LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
