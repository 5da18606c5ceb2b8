"""Sphinx configuration: MyST pages, the Furo theme, autodoc of ``streamq.__all__``.

Builds offline: no intersphinx, nothing fetched. ``scripts/docs`` runs it with warnings as
errors and nitpicky references.
"""

from __future__ import annotations

import sys
from pathlib import Path

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

sys.path.insert(0, str(Path(__file__).parent))  # _cli.py, the parser page's source

import streamq

project = "streamq"
author = "streamq contributors"
copyright = "streamq contributors"
release = streamq.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "conftest.py", "test_*.py", "_cli.py"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"streamq {release}"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

nitpicky = True
# Names from other libraries: no intersphinx (the build is offline), so they stay plain text.
nitpick_ignore_regex = [
    ("py:class", r"(redis|datetime|collections|contextlib|typing|types|_io|io|msgpack)\..*"),
    # Type variables of the generic Task/Job (ParamSpec P, return type R).
    ("py:class", r"~?(streamq\.[\w.]+\.)?(P|R|T)"),
    # Internal classes that public signatures name (App.store, Worker.outcomes): not API.
    (
        "py:class",
        r"streamq\.[\w.]+\.(Store|AsyncStore|Outcomes|Progress|Records|EagerRecords|TaskDecorator)",
    ),
]


def _public_name(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.Element | None:
    """Resolve ``streamq.<module>.Name`` to the documented ``streamq.Name``.

    Annotations carry the defining module (``streamq.settings.AppSettings``); the API page
    documents every public name at the top level, where users import it from, so links
    follow the public name whatever module it lives in.
    """
    target = node.get("reftarget", "")
    name = target.rsplit(".", 1)[-1]
    if not target.startswith("streamq.") or name not in streamq.__all__:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], f"streamq.{name}", node, contnode
    )


def _keep_property_summary(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Keep "Dead-letter stream: jobs that ..." a sentence, not a type (runs before napoleon).

    Napoleon reads a property docstring's first ``text: more`` as ``type: description``; a
    leading colon tells it there is no type.
    """
    if what == "property" and lines and ": " in lines[0]:
        lines[0] = ": " + lines[0]


def setup(app: Sphinx) -> None:
    app.connect("missing-reference", _public_name)
    app.connect("autodoc-process-docstring", _keep_property_summary, priority=400)
