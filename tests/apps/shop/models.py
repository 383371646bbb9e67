from django.db import models


class Order(models.Model):
    reference = models.CharField(max_length=40)

    class Meta:
        app_label = "shop"


class Customer(models.Model):
    name = models.CharField(max_length=80)

    class Meta:
        app_label = "shop"
