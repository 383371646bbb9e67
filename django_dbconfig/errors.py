"""The one exception type this package raises for configuration problems."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured


class DbConfigError(ImproperlyConfigured):
    """A database configuration value is missing, malformed or not allowed.

    The message names where the value came from (file and key path, or
    variable), the alias, what was expected and how to fix it. It never
    contains a password or other secret.
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or ''."""
    import difflib  # only when a message is being written

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' Did you mean "{close[0]}"?' if close else ""


def one_of(choices: Iterable[str]) -> str:
    """Format valid choices as 'a, b or c'."""
    items = [f'"{c}"' for c in choices]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
