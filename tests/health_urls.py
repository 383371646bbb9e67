"""A URLconf for the health endpoint tests."""

from django.urls import include, path

urlpatterns = [path("health/databases/", include("django_dbconfig.urls"))]
