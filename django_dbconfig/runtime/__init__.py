"""Runtime databases: aliases added to and removed from django.db.connections while the project runs."""
