"""PostgreSQL engine: Django's backend with a health check that reads the socket first."""
