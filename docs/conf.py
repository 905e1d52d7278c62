"""Sphinx configuration: Markdown pages (MyST) and the API reference from the docstrings
(autodoc). Built by CI with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``,
so a warning (a broken reference, a page outside the table of contents) fails the build."""
import gpuad

project = "gpuad"
author = "the gpuad authors"
copyright = "2026, the gpuad authors"
release = version = gpuad.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"undoc-members": False, "show-inheritance": True}

html_theme = "furo"
html_title = f"gpuad {release}"


def _plain_text_math(app, what, name, obj, options, lines):
    """gpuad's docstrings write math as plain text (``|x|``, ``a * b``), which reST would read
    as substitutions and emphasis: escape ``|`` and ``*`` outside literals (````...````) and
    doctest blocks, in place."""
    in_doctest = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">>>"):
            in_doctest = True
        elif not stripped:
            in_doctest = False
        if in_doctest:
            continue
        parts = line.split("``")
        for j in range(0, len(parts), 2):  # (the even parts are outside literals)
            parts[j] = parts[j].replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
        lines[i] = "``".join(parts)


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text_math)
