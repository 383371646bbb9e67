"""URLconf of the health endpoint: `path("health/databases/", include("django_dbconfig.urls"))`."""

from __future__ import annotations

from django.urls import path

from django_dbconfig.views import database_health

app_name = "django_dbconfig"
urlpatterns = [path("", database_health, name="database-health")]
