"""Django database engines that check a persistent connection's health without a round trip.

`build_databases()` renders these as ENGINE for PostgreSQL and MySQL/MariaDB. Each
subclasses Django's own backend and changes only the health check; Django imports
them (and so the driver) only when an alias that uses them is first opened.
"""
