"""PostGIS: GeoDjango's PostGIS engine on this project's PostgreSQL engine.

Rendering (settings.py) is PostgreSQL's with another ENGINE; the engine (base.py) joins
this project's PostgreSQL wrapper and GeoDjango's, so a spatial alias keeps every feature.
dbshell, dbcheck's probe and the SQL of poolers are PostgreSQL's.
"""
