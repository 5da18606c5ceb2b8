"""The docs pages that restate something the code defines stay in step with it."""

from __future__ import annotations

import re
from pathlib import Path

import streamq

DOCS = Path(__file__).parent
ROOT = DOCS.parent


def _acl_line(path: Path) -> str:
    return next(ln for ln in path.read_text().splitlines() if ln.startswith("ACL SETUSER"))


def test_security_page_shows_the_tested_acl() -> None:
    """The security page's ACL line is the README's, which tests/test_hardening.py checks."""
    assert _acl_line(DOCS / "security.md") == _acl_line(ROOT / "README.md")


def test_api_page_documents_exactly_the_public_names() -> None:
    """Every name in streamq.__all__ has an autodoc entry on the API page, and nothing else."""
    documented = re.findall(r"^\.\. auto\w+:: streamq\.(\w+)$", (DOCS / "api.md").read_text(), re.M)
    assert sorted(documented) == sorted(streamq.__all__)
    assert len(documented) == len(set(documented))


def test_every_page_is_in_the_table_of_contents() -> None:
    """A page left out of index.md would build as an orphan; the README links to each."""
    index = (DOCS / "index.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")):
        if page.stem == "index":
            continue
        assert re.search(rf"^{re.escape(page.stem)}$", index, re.M), page.name
        target = "CHANGELOG.md" if page.stem == "changelog" else f"docs/{page.name}"
        assert f"({target})" in readme, page.name
