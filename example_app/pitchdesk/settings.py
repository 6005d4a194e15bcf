"""Settings for the pitchdesk example app: everything environment-driven, PostgreSQL only."""

from __future__ import annotations

import os

from pitchdesk import breakage
from pitchdesk.dbconfig import database_settings

DEBUG = os.environ.get("DJANGO_DEBUG", "").lower() in ("1", "true", "yes", "on")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-test-only-secret-key-do-not-deploy")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

PITCHDESK_BREAK = breakage.parse(os.environ)

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "rest_framework",
    "pitchdesk",  # only for its runserver override (management/commands/runserver.py)
    "accounts",
    "catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "pitchdesk.urls"
WSGI_APPLICATION = "pitchdesk.wsgi.application"
# Templates only for the classic HTML login form at /accounts/login/ (Django's LoginView): browsers
# and `session_login(..., form=True)` log in there; the API itself renders JSON only.
TEMPLATES: list[dict[str, object]] = [
    {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True, "OPTIONS": {}}
]
LOGIN_REDIRECT_URL = "/api/auth/me/"

DATABASES = {"default": database_settings(os.environ)}
# Wrap each request in a transaction: a 500 half-way through (see PITCHDESK_BREAK) leaves no partial rows.
DATABASES["default"]["ATOMIC_REQUESTS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []  # test fixtures use short, documented passwords

# Django's default list, plus MD5 last so the fixture users' md5 hashes verify in every mode.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.MD5PasswordHasher",
]
if os.environ.get("PITCHDESK_FAST_PASSWORD_HASHER") == "1":
    # PBKDF2 costs ~0.3 s per login (and per hash upgrade); flows log in constantly. With MD5 first,
    # logins are instant and Django does not rewrite the fixtures' md5 hashes on login.
    PASSWORD_HASHERS.insert(0, PASSWORD_HASHERS.pop())

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

REST_FRAMEWORK = {
    # Session auth only: anonymous requests get 403 (not 401), since SessionAuthentication sends no
    # WWW-Authenticate header. Logged-in unsafe requests must carry X-CSRFToken.
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.DjangoModelPermissionsOrAnonReadOnly"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": None,
}

# Logs go to stderr, which the harness captures per app process: runserver's one line per request
# (django.server), 4xx warnings and 5xx tracebacks (django.request), regardless of DEBUG.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"},
    },
    "loggers": {
        "django": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "pitchdesk": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
