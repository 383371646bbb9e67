"""Integrations with other packages, each importing its package only when used."""
