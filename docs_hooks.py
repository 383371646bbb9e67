"""MkDocs hook: include sections of the repository's Markdown files in docs pages.

A line `--8<-- "README.md:reference"` is replaced by the text between
`<!-- --8<-- [start:reference] -->` and `<!-- --8<-- [end:reference] -->` in
README.md; `--8<-- "CHANGELOG.md"` by the whole file. Links written for readers
of the repository (`docs/checks.md`) are rewritten for the site (`checks.md`), so
the reference text lives once and its links work in both places. A missing file
or section fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
_INCLUDE = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"\s*$', flags=re.MULTILINE)
_REPOSITORY_LINK = re.compile(r"\]\(docs/")


def _section(match: re.Match[str]) -> str:
    path, name = ROOT / match[1], match[2]
    text = path.read_text(encoding="utf-8")
    if name:
        start, end = f"<!-- --8<-- [start:{name}] -->", f"<!-- --8<-- [end:{name}] -->"
        if start not in text or end not in text:
            raise ValueError(f"{match[1]} has no section {name!r} ({start} ... {end})")
        text = text.split(start, 1)[1].split(end, 1)[0]
    return _REPOSITORY_LINK.sub("](", text.strip("\n"))


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _INCLUDE.sub(_section, markdown)
