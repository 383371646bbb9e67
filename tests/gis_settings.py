"""Settings of the GeoDjango tests' projects: the suite's, with GeoDjango and a spatial app.

Kept apart from tests/settings.py so that the rest of the suite never loads GDAL: a
project's settings.py in the GIS tests starts with `from tests.gis_settings import *`.
"""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.gis", "tests.apps.geo"]
