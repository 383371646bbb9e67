"""The ENGINE paths of django-dbconfig before 0.2, kept working for the 0.x series.

`build_databases()` renders `django_dbconfig.backends.postgresql` and
`django_dbconfig.backends.mysql` now; a settings file or a `dbconfig --export` output
written earlier may still name `django_dbconfig.engines.<family>`, which loads the same engine.
"""
