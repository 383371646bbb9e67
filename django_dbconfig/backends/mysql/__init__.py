"""MySQL and MariaDB: rendering and reading back (settings.py), the engine (base.py), dbshell
(client.py), dbcheck's probe and replication status (probe.py).
"""
