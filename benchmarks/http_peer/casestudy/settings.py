"""Settings of the case-study peer: the database comes from PEER_DATABASE_URL.

Kept as lean as energyctl's own (one middleware, JSON in and out only), so the benchmark
compares the two designs, not a heavier default set-up.
"""

import os

import dj_database_url

SECRET_KEY = "case-study-peer-not-secret"  # noqa: S105 - signs nothing; the peer serves a benchmark on loopback
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["rest_framework", "benchmarks.http_peer.casestudy"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "benchmarks.http_peer.casestudy.urls"
WSGI_APPLICATION = "benchmarks.http_peer.casestudy.wsgi.application"

DATABASES = {"default": dj_database_url.parse(os.environ["PEER_DATABASE_URL"], conn_max_age=60)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The case study leaves authentication out on purpose.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
}
