from django.apps import AppConfig


class GeoConfig(AppConfig):
    """A GeoDjango app, installed only by the GIS tests' settings (tests/gis_settings.py)."""

    name = "tests.apps.geo"
    label = "geo"
