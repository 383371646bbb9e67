"""SQL text split into statements of tokens, with string literals and comments set apart.

The read-only guard reads the statements an application sends to a read-only alias
for the few that would lift read-only mode (`routers/readonly.py`). It needs the
words outside string literals and comments, and the text inside the literals, but no
grammar: each family says which of its statements lift read-only (its `settings.py`),
and how its SQL quotes (a `Dialect`).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

__all__ = ["Dialect", "Kind", "Token", "is_word", "reads_write", "statements", "strings_in"]


class Kind(Enum):
    WORD = "word"  # a keyword, a name or a number, lower-cased
    STRING = "string"  # a string literal's content, unquoted
    IDENT = "ident"  # a quoted identifier's content, lower-cased
    PARAM = "param"  # a driver placeholder: %s or %(name)s
    PUNCT = "punct"  # one character of punctuation, or :=


class Token(NamedTuple):
    kind: Kind
    text: str


@dataclass(frozen=True)
class Dialect:
    """How one family's SQL quotes strings and names, and writes comments."""

    # Characters a word may start with, besides letters and `_`.
    word_start: str = ""
    # Characters a word may continue with, besides letters, digits and `_`.
    word_more: str = "$"
    backslash_escapes: bool = False  # '\'' inside a string (MySQL); PostgreSQL only in E'...'
    double_quoted_strings: bool = False  # "..." is a string (MySQL) rather than a name
    backquoted_names: bool = False  # `name` (MySQL)
    dollar_quotes: bool = False  # $tag$...$tag$ (PostgreSQL)
    hash_comments: bool = False  # # to the end of the line (MySQL)
    dash_comment_needs_space: bool = False  # `--` starts a comment only before a space (MySQL)
    nested_comments: bool = False  # /* /* */ */ (PostgreSQL)
    # /*! ... */ and /*M! ... */ are run by the server, not skipped (MySQL, MariaDB).
    executable_comments: bool = False
    # One token (or a stretch to skip) at a position, after any white space.
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", self.compile())

    def compile(self) -> re.Pattern[str]:
        dashes = r"--(?=\s|\Z)" if self.dash_comment_needs_space else "--"
        parts = [r"(?P<space>\s+)", rf"(?P<line>{dashes}[^\n]*)"]
        if self.hash_comments:
            parts.append(r"(?P<hash>\#[^\n]*)")
        if self.executable_comments:
            # The marker and the version go; the text inside is read as code.
            parts.append(r"(?P<run>/\*M?!\d*|\*/)")
        parts.append(r"(?P<block>/\*)")
        if self.dollar_quotes:
            parts.append(r"(?P<dollar>\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$)")
            parts.append(r"(?P<estring>[eE]'(?:[^'\\]|\\.|'')*(?:'|\Z))")
        escape = r"|\\." if self.backslash_escapes else ""
        no_escape = r"\\" if self.backslash_escapes else ""
        parts.append(rf"(?P<string>'(?:[^'{no_escape}]|''{escape})*(?:'|\Z))")
        if self.double_quoted_strings:
            parts.append(rf'(?P<dstring>"(?:[^"{no_escape}]|""{escape})*(?:"|\Z))')
        else:
            parts.append(r'(?P<ident>"(?:[^"]|"")*(?:"|\Z))')
        if self.backquoted_names:
            parts.append(r"(?P<bident>`(?:[^`]|``)*(?:`|\Z))")
        parts.append(r"(?P<param>%\([^)]*\)s|%s)")
        start, more = re.escape(self.word_start), re.escape(self.word_start + self.word_more)
        parts.append(rf"(?P<word>[\w{start}][\w{more}]*)")
        parts.append(r"(?P<punct>:=|\S)")
        return re.compile(r"\s*(?:" + "|".join(parts) + ")")


def statements(sql: str, dialect: Dialect) -> list[list[Token]]:
    """The statements of `sql` (split at `;`), each a list of tokens; comments dropped.

    An unterminated literal or comment runs to the end, as the server would read it
    (and refuse the text).
    """
    pattern = dialect.pattern
    found: list[list[Token]] = [[]]
    pos, end = 0, len(sql)
    while pos < end:
        match = pattern.match(sql, pos)
        if match is None:  # pragma: no cover - punct matches any non-space character
            break
        kind = match.lastgroup
        text = match.group(kind or 0)
        pos = match.end()
        current = found[-1]
        if kind in ("space", "line", "hash", "run"):
            continue
        if kind == "block":
            pos = _comment_end(sql, pos, nested=dialect.nested_comments)
        elif kind == "dollar":
            close = sql.find(text, pos)
            body_end = end if close < 0 else close
            current.append(Token(Kind.STRING, sql[pos:body_end]))
            pos = end if close < 0 else close + len(text)
        elif kind == "estring":
            current.append(Token(Kind.STRING, _unquote(text[1:], "'", backslash=True)))
        elif kind in ("string", "dstring"):
            current.append(Token(Kind.STRING, _unquote(text, text[0], backslash=dialect.backslash_escapes)))
        elif kind in ("ident", "bident"):
            current.append(Token(Kind.IDENT, _unquote(text, text[0], backslash=False).lower()))
        elif kind == "param":
            current.append(Token(Kind.PARAM, text))
        elif kind == "word":
            current.append(Token(Kind.WORD, text.lower()))
        elif text == ";":
            found.append([])
        else:
            current.append(Token(Kind.PUNCT, text))
    return [statement for statement in found if statement]


def _comment_end(sql: str, pos: int, *, nested: bool) -> int:
    """Where a /* comment that started before pos ends (after its */)."""
    depth = 1
    while depth:
        close = sql.find("*/", pos)
        if close < 0:
            return len(sql)
        opened = sql.find("/*", pos, close) if nested else -1
        if opened >= 0:
            depth, pos = depth + 1, opened + 2
        else:
            depth, pos = depth - 1, close + 2
    return pos


_BACKSLASH = re.compile(r"\\(.)", re.S)


def _unquote(text: str, quote: str, *, backslash: bool) -> str:
    """A quoted literal's content: the quotes gone, doubled quotes single."""
    body = text[1:-1] if len(text) > 1 and text.endswith(quote) else text[1:]
    body = body.replace(quote * 2, quote)
    return _BACKSLASH.sub(r"\1", body) if backslash else body


def is_word(token: Token | None, *words: str) -> bool:
    """Whether a token is one of these (lower-case) words."""
    return token is not None and token.kind is Kind.WORD and token.text in words


def reads_write(statement: list[Token]) -> bool:
    """Whether a statement says READ WRITE (a transaction's access mode)."""
    return any(
        is_word(token, "read") and is_word(following, "write")
        for token, following in itertools.pairwise(statement)
    )


def strings_in(params: object) -> list[str]:
    """The strings among a statement's parameters (a sequence, a mapping, or executemany's list of them)."""
    if isinstance(params, str):
        return [params]
    if isinstance(params, dict):
        params = list(params.values())
    if not isinstance(params, (list, tuple)):
        return []
    found: list[str] = []
    for param in params:
        if isinstance(param, str):
            found.append(param)
        elif isinstance(param, (list, tuple, dict)):
            found.extend(strings_in(param))
    return found
