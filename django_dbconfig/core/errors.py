"""The one exception type this package raises for configuration problems."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from django.core.exceptions import ImproperlyConfigured


class DbConfigError(ImproperlyConfigured):
    """A database configuration value is missing, malformed or not allowed.

    The message names where the value came from (file and key path, or
    variable), the alias, what was expected and how to fix it. It never
    contains a password or other secret. When several values are wrong,
    `problems` holds one message per value and the message lists them all.
    """

    problems: tuple[str, ...] = ()


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


# Longest piece of a bad value quoted back in a message: enough to recognise it.
SHOWN_CHARS = 40


def shown(value: object) -> str:
    """A bad value as quoted in a message: its repr, cut short."""
    text = repr(value) if not isinstance(value, int) or isinstance(value, bool) else _short_int(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def quoted(text: str) -> str:
    """A bad string as quoted in a message: in double quotes, cut short."""
    cut = text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
    return f'"{cut}"'


def _short_int(value: int) -> str:
    digits = len(str(abs(value))) if abs(value) < 10**SHOWN_CHARS else None
    return str(value) if digits is not None else f"a number of more than {SHOWN_CHARS} digits"


class ErrorCollector:
    """Gathers DbConfigErrors so that one error can list every wrong value.

    `with collector.item(): ...` runs one independent piece of validation; a
    DbConfigError inside it is recorded and the work goes on with the next piece.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    @contextlib.contextmanager
    def item(self) -> Iterator[None]:
        try:
            yield
        except DbConfigError as exc:
            self.messages.extend(problems_of(exc))

    def raise_if_any(self) -> None:
        if self.messages:
            raise combined(self.messages)


def problems_of(error: DbConfigError) -> tuple[str, ...]:
    """The single problems an error stands for (several when it lists many)."""
    return error.problems or (str(error),)


def combined(messages: Iterable[str]) -> DbConfigError:
    """One DbConfigError for every message, in order, each once."""
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        error = DbConfigError(unique[0])
    else:
        lines = "\n".join(f"- {message}" for message in unique)
        error = DbConfigError(f"{len(unique)} problems in the database configuration:\n{lines}")
    error.problems = tuple(unique)
    return error
