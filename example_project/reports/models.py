"""Reports live on the `analytics` alias (routes: {"reports": "analytics"})."""

from django.db import models


class DailySales(models.Model):
    day = models.DateField(unique=True)
    orders = models.PositiveIntegerField(default=0)
    revenue_cents = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.day}: {self.orders} orders"
