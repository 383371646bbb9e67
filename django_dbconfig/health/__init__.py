"""The health endpoint's probing, cache and OpenMetrics text (views.py serves them)."""
