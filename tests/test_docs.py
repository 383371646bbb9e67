"""The docs cover what the code has: every key and variable in the configuration reference,
every page in the site's nav, and only absolute links on the PyPI page."""

from __future__ import annotations

import re
from pathlib import Path

from django_dbconfig.conf.sources import META_VARIABLES
from django_dbconfig.core.keys import KEYS

ROOT = Path(__file__).resolve().parent.parent


def section(path: Path, name: str) -> str:
    """The text between the `--8<-- [start:name]` and `[end:name]` markers that docs pages include."""
    text = path.read_text()
    start = text.index(f"<!-- --8<-- [start:{name}] -->")
    return text[start : text.index(f"<!-- --8<-- [end:{name}] -->", start)]


def test_configuration_reference_names_every_key_and_variable() -> None:
    reference = section(ROOT / "README.md", "reference")
    assert [key for key in KEYS if f"`{key}`" not in reference] == []
    variables = [*META_VARIABLES, "DATABASE_URL", "<ALIAS>_DATABASE_URL", "DBCONFIG_<ALIAS>_<KEY>", "_FILE"]
    assert [name for name in variables if name not in reference] == []


def test_every_docs_page_is_in_the_site_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text().partition("\nnav:\n")[2].partition("\n\n")[0]
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", nav, flags=re.MULTILINE))
    assert listed == {path.name for path in (ROOT / "docs").glob("*.md")}


def test_the_pypi_page_links_only_absolute_addresses() -> None:
    text = (ROOT / "README.pypi.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)
    assert links, "the PyPI page should link to the docs"
    assert [link for link in links if not link.startswith("https://")] == []
