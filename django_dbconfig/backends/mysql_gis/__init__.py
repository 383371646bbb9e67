"""MySQL and MariaDB with GeoDjango: GeoDjango's MySQL engine on this project's MySQL engine.

Rendering (settings.py) is MySQL's (or MariaDB's) with another ENGINE; the engine
(base.py) joins this project's MySQL wrapper and GeoDjango's. dbshell and dbcheck's
probe are MySQL's.
"""
