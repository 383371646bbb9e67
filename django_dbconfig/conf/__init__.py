"""Building the settings: sources (one per layer) -> merge with provenance -> validated alias
values -> each family's rendering (backends/<family>/settings.py) -> Django's DATABASES.

Pure: nothing here imports django.db or a driver, or opens a connection
(the import-linter contracts in pyproject.toml keep it so).
"""
