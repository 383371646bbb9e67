"""A URLconf with django-health-check 4's view running django-dbconfig's check."""

from django.urls import path
from health_check.views import HealthCheckView

urlpatterns = [
    path("health/", HealthCheckView.as_view(checks=["django_dbconfig.contrib.health_check.Databases"])),
    path(
        "health/analytics/",
        HealthCheckView.as_view(
            checks=[("django_dbconfig.contrib.health_check.Databases", {"aliases": ("pg",)})]
        ),
    ),
]
