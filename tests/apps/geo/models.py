from django.contrib.gis.db import models


class Place(models.Model):
    name = models.CharField(max_length=80)
    location = models.PointField(srid=4326)

    class Meta:
        app_label = "geo"


class Area(models.Model):
    name = models.CharField(max_length=80)
    boundary = models.PolygonField(srid=4326)

    class Meta:
        app_label = "geo"
