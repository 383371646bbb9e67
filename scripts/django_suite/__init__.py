"""Django's own test suite run against this project's engines and Django's (scripts/django-suite.sh)."""
