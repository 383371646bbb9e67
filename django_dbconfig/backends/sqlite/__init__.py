"""SQLite: rendering (settings.py) and dbcheck's probe (probe.py); Django's own engine serves it."""
