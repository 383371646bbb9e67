"""Settings for the test suite. Tests build their own configs with load_config()."""

SECRET_KEY = "tests-only-not-secret"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_dbconfig",
    "tests.apps.shop",
    "tests.apps.reports",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
