"""Django settings for energyctl: one flat module, configured from the environment.

DATABASE_URL            postgresql://… or sqlite:///path; unset = the embedded PostgreSQL
ENERGYCTL_PGDATA        data directory of the embedded PostgreSQL (default: per-user data dir)
ENERGYCTL_SECRET_KEY    required by `energyctl serve --production`
ENERGYCTL_DEBUG         "1" turns Django's debug mode on (never in production)
ENERGYCTL_ALLOWED_HOSTS comma-separated host names the HTTP API answers to
ENERGYCTL_TRUSTED_PROXY address of a TLS-terminating proxy whose X-Forwarded-Proto is believed ("*": any)
ENERGYCTL_LOG_LEVEL     level of the energy.* loggers (default INFO)
ENERGYCTL_LOG_FORMAT    "json" for one JSON object per log record, else plain text
ENERGYCTL_CONN_MAX_AGE  seconds a server keeps a database connection across requests (default 600)
"""

import ipaddress
import os
import secrets

from energy.db.config import CONN_MAX_AGE_S, InvalidSetting, database_settings

# Nothing this project signs outlives the process, so a random key is safe for local use;
# production mode (`energyctl serve --production`) refuses to start without a real one.
SECRET_KEY = os.environ.get("ENERGYCTL_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("ENERGYCTL_DEBUG", "") == "1"
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("ENERGYCTL_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]
# A proxy in front of `energyctl serve` that terminates TLS: its address as the server sees it,
# or "*" for any peer. Its X-Forwarded-Proto is then believed, so the links the API builds (a
# history page's `next`) keep the https scheme; from anyone else the header is dropped. Unset:
# no one's, since a client could send the header itself.
TRUSTED_PROXY = os.environ.get("ENERGYCTL_TRUSTED_PROXY", "").strip() or None
if TRUSTED_PROXY not in (None, "*"):
    try:
        ipaddress.ip_address(TRUSTED_PROXY)
    except ValueError:
        raise InvalidSetting("ENERGYCTL_TRUSTED_PROXY", f"must be an IP address or *, not {TRUSTED_PROXY!r}") from None

# energyctl is an app only for its management commands (seed_accounts, replay_keys, race_demo).
INSTALLED_APPS = ["rest_framework", "drf_spectacular", "energy", "energyctl"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "energy.urls"
WSGI_APPLICATION = "energy.wsgi.application"

DATABASES = {"default": database_settings(os.environ.get("DATABASE_URL"))}
# Connections outlive requests: opening one (and preparing its statements again) cost more
# than the whole consume. A kept connection is not probed before reuse (Django's
# CONN_HEALTH_CHECKS would spend a round trip on every request): the first statement of a
# request, the token lookup, is retried once on a new connection when the kept one turns
# out dead (energy.db.guard.once_more_if_lost), so a database restart costs no
# failed request. Django's pool was measured too and spent more CPU per request (README).
DATABASES["default"]["CONN_MAX_AGE"] = CONN_MAX_AGE_S
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

# Request bodies above this are refused with 413 before they are parsed: a consume
# request is under 400 bytes, so 64 KiB leaves room without inviting abuse.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["energy.http.content.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's negotiation, answered without parsing an Accept header that leaves no choice.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "energy.http.content.JSONFirstNegotiation",
    # Every API view needs a client's Bearer token (see energy/http/auth.py); the views
    # that need none (/healthz, /api/schema/) say so themselves.
    "DEFAULT_AUTHENTICATION_CLASSES": ["energy.http.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [
        "energy.http.auth.IsClient",
        "energy.http.auth.HasScope",
        "energy.http.auth.AccountAllowed",
    ],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "energy.http.errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "energyctl",
    "DESCRIPTION": "Spend energy from account balances exactly once per client and idempotency key.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The document is public: serving it reads no Authorization header at all.
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # A consume answers applied or replayed; a stored record is always applied.
    "ENUM_NAME_OVERRIDES": {"OutcomeStatusEnum": ["applied", "replayed"], "AppliedStatusEnum": ["applied"]},
}

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Only the chosen formatter is configured: the JSON one imports its library.
_FORMATTER = (
    {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": _LOG_FORMAT}
    if os.environ.get("ENERGYCTL_LOG_FORMAT") == "json"
    else {"format": _LOG_FORMAT}
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"chosen": _FORMATTER},
    "filters": {
        # What a caller sent (a path with %0d%0a, a header) never starts a line of its own.
        "one_line": {"()": "energy.http.log_lines.OneLine"},
        # The id a 500 answer showed, on Django's record of that failure.
        "error_id": {"()": "energy.http.log_lines.ErrorIdFilter"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "chosen",
            "filters": ["one_line"],
        },
    },
    "loggers": {
        "energy": {
            "handlers": ["stderr"],
            "level": os.environ.get("ENERGYCTL_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        # Django's record of a failed request, traceback included: a 500's reason is never lost.
        # 4xx answers are on the access log line already; debug mode lists them here too.
        "django.request": {
            "handlers": ["stderr"],
            "filters": ["error_id"],
            "level": "WARNING" if DEBUG else "ERROR",
            "propagate": False,
        },
        # waitress warns "Task queue depth is N" whenever a request arrives before a thread
        # has marked itself idle: with keep-alive clients that is nearly every request under
        # load, a line each, written while the request waits. Load shows in the access log's times.
        "waitress.queue": {"level": "ERROR"},
    },
}
