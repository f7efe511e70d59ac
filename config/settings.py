"""Warden settings: one file, read from the environment only (see .env.example).

Defaults give the embedded mode: SQLite in ./data, no broker (background work runs
in-process), DEBUG on. Production sets DEBUG=false, SECRET_KEY, ALLOWED_HOSTS,
DATABASE_URL and REDIS_URL.
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config import env

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / "data"

DEBUG = env.boolean("DEBUG", True)
SECRET_KEY = env.string("SECRET_KEY", secret=True)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) is required when DEBUG is off.")
    SECRET_KEY = "warden-insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env.csv("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.csv("CSRF_TRUSTED_ORIGINS", [])
TIME_ZONE = env.timezone("TIME_ZONE", "UTC")
USE_TZ = True
USE_I18N = False
LANGUAGE_CODE = "en-gb"

INSTALLED_APPS = [
    "audit",  # first, so that its createsuperuser (which records the account) is the one run
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "common",
    "registry",
    "governance",
    "notifications",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "common.admin.SendAgainMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "audit.context.RequestContextMiddleware",
    "common.memo.MemoMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
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
            ]
        },
    }
]

DATABASES = {
    "default": env.database("DATABASE_URL", f"sqlite:///{DATA_DIR / 'warden.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Tests use a file beside the database, not :memory:, so that threads share it.
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
# Optional: the tables' owner, for `migrate --database owner` and `audit_grants`, when the
# application itself connects (DATABASE_URL) as a runtime role that owns nothing.
if env.string("DATABASE_OWNER_URL", secret=True):
    DATABASES["owner"] = env.database("DATABASE_OWNER_URL", "")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Background work: with REDIS_URL, Celery workers on Redis; without it, tasks run in-process.
REDIS_URL = env.redis_url("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
# A write whose broker is down must not hang on it: the outbox's sweep delivers later.
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

AUTHENTICATION_BACKENDS = [
    "common.auth.ThrottledModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# Failed sign-ins per (username, address; an IPv6 address's /64), and per username from every
# address together, before further attempts are refused for the window (``common.auth``).
LOGIN_FAILURE_LIMIT = env.integer("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_FAILURE_WINDOW = env.integer("LOGIN_FAILURE_WINDOW", 900, minimum=1)
LOGIN_FAILURE_ACCOUNT_LIMIT = env.integer("LOGIN_FAILURE_ACCOUNT_LIMIT", 100, minimum=1)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
GUARDIAN_ANONYMOUS_USER_NAME = None
ANONYMOUS_USER_NAME = None

STATIC_URL = "static/"
STATIC_ROOT = env.string("STATIC_ROOT") or str(DATA_DIR / "static")
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # WhiteNoise serves from here after collectstatic

# Behind a TLS-terminating proxy. Secure by default when DEBUG is off; each can be relaxed.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.boolean("SECURE_PROXY_SSL_HEADER", not DEBUG) else None
)
SECURE_SSL_REDIRECT = env.boolean("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^health$"]
SESSION_COOKIE_SECURE = env.boolean("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env.boolean("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env.integer("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.boolean("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env.boolean("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.integer("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
X_FRAME_OPTIONS = "DENY"
# Signed checkpoints of the audit ledger: the Ed25519 private key (hex; manage.py audit_keygen),
# the public keys verify accepts (comma-separated; default: the signing key's), a directory
# outside the database for witness copies, and how often a checkpoint is made.
AUDIT_SIGNING_KEY = env.string("AUDIT_SIGNING_KEY", secret=True)
AUDIT_VERIFY_KEYS = env.csv("AUDIT_VERIFY_KEYS", [])
AUDIT_WITNESS_DIR = env.string("AUDIT_WITNESS_DIR") or str(DATA_DIR / "witness")
AUDIT_CHECKPOINT_EVERY_MINUTES = env.integer("AUDIT_CHECKPOINT_EVERY_MINUTES", 10, minimum=1)
AUDIT_CHECKPOINT_EVERY_EVENTS = env.integer("AUDIT_CHECKPOINT_EVERY_EVENTS", 1000, minimum=1)

# Notifications: email through Django's mail backend (the console unless EMAIL_HOST is set)
# and signed webhooks, retried with a doubling backoff from NOTIFY_BACKOFF_SECONDS.
EMAIL_HOST = env.string("EMAIL_HOST") or ""
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env.integer("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env.string("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env.string("EMAIL_HOST_PASSWORD", secret=True) or ""
EMAIL_USE_TLS = env.boolean("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env.string("DEFAULT_FROM_EMAIL") or "warden@localhost"
EMAIL_TIMEOUT = env.integer("EMAIL_TIMEOUT", 10, minimum=1, maximum=120)
NOTIFY_MAX_ATTEMPTS = env.integer("NOTIFY_MAX_ATTEMPTS", 8, minimum=1, maximum=50)
NOTIFY_BACKOFF_SECONDS = env.integer("NOTIFY_BACKOFF_SECONDS", 30, minimum=1)
NOTIFY_WEBHOOK_TIMEOUT = env.integer("NOTIFY_WEBHOOK_TIMEOUT", 10, minimum=1, maximum=120)
NOTIFY_SWEEP_SECONDS = env.integer("NOTIFY_SWEEP_SECONDS", 30, minimum=1)
# Webhooks reach public addresses only; a receiver inside the network (a chat bridge, a CI
# runner) is allowed by naming its network, e.g. "10.20.0.0/16,127.0.0.1/32".
NOTIFY_WEBHOOK_ALLOWED_NETWORKS = env.networks("NOTIFY_WEBHOOK_ALLOWED_NETWORKS")

# The lifecycle's clock: business days skip weekends and HOLIDAYS; a revalidation request opens
# REVALIDATION_LEAD_DAYS before an approval expires; a reminder goes SLA_REMINDER_HOURS before a
# stage is due, and an overdue stage is escalated to the risk officers.
HOLIDAYS = env.dates("HOLIDAYS", [])
REVALIDATION_LEAD_DAYS = env.integer("REVALIDATION_LEAD_DAYS", 30, minimum=1, maximum=365)
SLA_REMINDER_HOURS = env.integer("SLA_REMINDER_HOURS", 24, minimum=1, maximum=24 * 30)
LIFECYCLE_SWEEP_SECONDS = env.integer("LIFECYCLE_SWEEP_SECONDS", 900, minimum=10)
# How often every live deployment's monitoring is evaluated again (thresholds may have changed,
# data may have stopped coming). Observations are also evaluated as they arrive.
MONITORING_EVALUATE_SECONDS = env.integer("MONITORING_EVALUATE_SECONDS", 3600, minimum=10)

# Periodic work. Celery beat runs it with Redis; without Redis, `manage.py serve` (make run)
# runs the same entries in-process (common.scheduler). A run that has not started within twice
# its interval (five minutes at least, so that a queue of emails or a skewed clock does not drop
# every run) expires: workers that were down come back to the next run, not to a backlog.
CELERY_BEAT_SCHEDULE = {
    name: {"task": task, "schedule": seconds, "options": {"expires": max(2 * seconds, 300.0)}}
    for name, task, seconds in [
        ("audit-checkpoint", "audit.tasks.checkpoint", 60.0),
        ("notifications-sweep", "notifications.tasks.sweep", float(NOTIFY_SWEEP_SECONDS)),
        ("lifecycle-sweep", "governance.tasks.lifecycle_sweep", float(LIFECYCLE_SWEEP_SECONDS)),
        ("monitoring-evaluate", "monitoring.tasks.evaluate", float(MONITORING_EVALUATE_SECONDS)),
    ]
}
# Aliases that only point at a version passing the gate of an environment (alias=environment),
# and the days after an approval's revalidation date before the gate refuses the version.
PROTECTED_ALIASES = env.mapping("PROTECTED_ALIASES", {"production": "production", "champion": "production"})
GATE_GRACE_DAYS = env.integer("GATE_GRACE_DAYS", 0, minimum=0, maximum=3650)
# On PostgreSQL, chain each audit event when its transaction commits (audit.triggers), and
# release the chain head at commit, waiting for the WAL flush after it, so that concurrent
# writers share flushes (audit.services._release_early has the trade-off).
AUDIT_CHAIN_AT_COMMIT = env.boolean("AUDIT_CHAIN_AT_COMMIT", True)
AUDIT_EARLY_LOCK_RELEASE = env.boolean("AUDIT_EARLY_LOCK_RELEASE", True)
# The longest request body the monitoring ingest endpoints read: the largest batch they accept,
# 1,000 distributions of 1,000 bins with labels of 100 characters, fits. Every other endpoint
# keeps Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB; common.api._within_limit).
API_MAX_BODY_BYTES = env.integer("API_MAX_BODY_BYTES", 128 * 1024 * 1024, minimum=1024)
# Only trust X-Forwarded-For for the audit trail's source address when a proxy sets it.
AUDIT_TRUST_X_FORWARDED_FOR = env.boolean("AUDIT_TRUST_X_FORWARDED_FOR", False)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "registry.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "common.api.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "common.api.CursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.api.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "common.api.JSONParser",
        "common.api.FormParser",
        "common.api.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "common.api.ContentNegotiation",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Warden API",
    "DESCRIPTION": "Model registry with governance built in. Authenticate with "
    "`Authorization: Bearer <token>`; create tokens at /api/v1/tokens/.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RiskTierEnum": "registry.models.RiskTier",
        "ModelStatusEnum": "registry.models.ModelStatus",
        "DocumentStatusEnum": "governance.models.DocumentStatus",
        "FindingStateEnum": "governance.models.FindingState",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR"])},
}
