from django.db import models


class DailyTotal(models.Model):
    day = models.DateField()
    total = models.IntegerField(default=0)

    class Meta:
        app_label = "reports"
