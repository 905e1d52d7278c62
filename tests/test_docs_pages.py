"""The documentation pages' promises, run: each page of docs/ is read as a tutorial, its
``pycon`` blocks in order as one doctest (a later block uses what an earlier one made), on the
CPU, and every page is in the site's table of contents."""
import doctest
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def _blocks(text):
    return re.findall(r"```pycon\n(.*?)```", text, re.S)


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p.read_text())],
                         ids=lambda p: p.name)
def test_the_examples_of_a_page_print_what_it_shows(page, cpu_default):
    source = "\n".join(_blocks(page.read_text()))
    test = doctest.DocTestParser().get_doctest(source, {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = []
    runner.run(test, out=report.append)
    assert runner.tries and not runner.failures, "".join(report)


def test_every_page_is_in_the_table_of_contents():
    index = (DOCS / "index.md").read_text()
    listed = set(re.findall(r"^([\w-]+)$", index, re.M))
    missing = [p.stem for p in PAGES if p.stem != "index" and p.stem not in listed]
    assert not missing, f"pages not in docs/index.md's toctree: {missing}"
