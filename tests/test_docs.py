"""The documentation against the code: the README's front door, the architecture page's layout, no docstring
citing notes that are not in the repository, and docstrings in the Markdown the API reference renders.
(`mkdocs build --strict`, in the docs tox env, checks the links.)"""

from __future__ import annotations

import ast
import re

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "hf_summary"
NOTES_OUTSIDE_THE_REPOSITORY = ("hub-api.md", "xet-notes.md", "tfevents-notes", "integrations-notes", "DESIGN.md")


def test_the_readme_starts_with_the_demo_and_the_tests():
    first_block = (REPO_ROOT / "README.md").read_text().split("```")[1]
    assert "pip install . && hf-summary demo" in first_block
    assert "python3 -m tox" in first_block


def test_the_architecture_page_lists_every_module_and_package():
    """Its Layout block: a line per module or package of hf_summary (two spaces in) and per module of a package it
    details (four spaces in; ``__init__.py`` optional), and nothing that no longer exists."""
    block = (REPO_ROOT / "docs" / "architecture.md").read_text().split("## Layout", 1)[1].split("```")[1]
    listed, package = set(), PACKAGE
    for line in block.splitlines():
        if match := re.match(r"^(  |    )([\w.]+/?)\s", line):
            indent, name = match.groups()
            if indent == "  ":
                package = PACKAGE / name if name.endswith("/") else PACKAGE
            listed.add((package if indent == "    " else PACKAGE) / name)
    present = {p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    present |= {p.parent for p in PACKAGE.glob("*/__init__.py")}
    for detailed in {p for p in listed if p.is_dir()}:
        if any(p.parent == detailed for p in listed):
            present |= {p for p in detailed.glob("*.py") if p.name != "__init__.py"}
    assert not (missing := sorted(str(p.relative_to(PACKAGE)) for p in present - listed)), (
        f"docs/architecture.md's Layout does not list {missing}: add a line for each")
    assert not (gone := sorted(str(p.relative_to(PACKAGE)) for p in listed if not p.exists())), (
        f"docs/architecture.md's Layout lists {gone}, which do not exist (any more)")


def test_no_docstring_cites_notes_outside_the_repository():
    cited = [
        f"{path.relative_to(REPO_ROOT)}: {note}"
        for folder in ("hf_summary", "tests", "scripts")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if path.name != "test_docs.py"
        for note in NOTES_OUTSIDE_THE_REPOSITORY
        if note in path.read_text()
    ]
    assert not cited, cited


def test_docstrings_are_markdown_not_restructuredtext():
    """mkdocstrings renders docstrings as Markdown: a Sphinx role (`:class:` and the like) shows as typed. A
    cross-reference is `[Name][hf_summary.full.path]` (to an object of the API reference), else `Name` in
    backticks."""
    sphinx_role = re.compile(r":(class|func|meth|mod|data|attr|exc|obj|const):`")
    found = []
    for folder in ("hf_summary", "scripts"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    docstring = ast.get_docstring(node, clean=False) or ""
                    if sphinx_role.search(docstring) or re.search(r"(?<!`)``(?!`)", docstring):
                        found.append(f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', 1)}")
    assert not found, f"reStructuredText roles or ``literals`` in docstrings (use Markdown): {found}"
