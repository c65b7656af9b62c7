"""The documentation: its runnable examples run, and its relative links resolve.

A ```` ```python ```` block preceded by the line ``<!-- test -->`` is an example that must run
offline, as written. The blocks of one page run in order in one namespace (a later block may use
names an earlier one defined), in a temporary working directory, so a block may create files
such as ``sqlite:///escrow.db``. Unmarked blocks (those that need Stripe or PostgreSQL) are
only read, never run.
"""

from __future__ import annotations

import re
import sys
import traceback
import types
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

MARKER = "<!-- test -->"
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
# Inline links and images: [text](target "title"); reference definitions: [name]: target.
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_INLINE_CODE = re.compile(r"`+[^`\n]*`+")
_LOCAL_ANCHOR = re.compile(r"\]\(\s*(#[^)\s]+)\s*\)")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:...


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  #: 1-based line of the first line of code (after the opening fence)
    language: str
    code: str
    marked: bool


def blocks(page: Path) -> list[Block]:
    """Every fenced code block of `page`, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence, language = opening.groups()
        previous = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        start = index + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        code = "\n".join(line.removeprefix(indent) for line in lines[start:end])
        found.append(
            Block(
                page=page,
                line=start + 1,
                language=language.lower(),
                code=code,
                marked=previous == MARKER,
            )
        )
        index = end + 1
    return found


def runnable(page: Path) -> list[Block]:
    """The marked Python blocks of `page`."""
    return [b for b in blocks(page) if b.marked and b.language in ("python", "py")]


def prose_with_code_spans(page: Path) -> str:
    """`page` with its fenced code blocks blanked (line numbers kept)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for block in blocks(page):
        code_lines = block.code.count("\n") + 1
        for number in range(block.line - 2, block.line + code_lines):
            if 0 <= number < len(lines):
                lines[number] = ""
    return "\n".join(lines)


def prose(page: Path) -> str:
    """`page` without its fenced code blocks and inline code, where links are not links."""
    return _INLINE_CODE.sub("", prose_with_code_spans(page))


def relative_links(page: Path) -> list[str]:
    """The link targets of `page` that point at files of this repository."""
    text = prose(page)
    targets = _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)
    return [t for t in targets if not _EXTERNAL.match(t) and not t.startswith("#")]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of `page` (``## Foo `bar()` `` is ``foo-bar``)."""
    found: set[str] = set()
    for line in prose_with_code_spans(page).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        anchor, number = slug, 0
        while anchor in found:  # repeated headings get -1, -2...
            number += 1
            anchor = f"{slug}-{number}"
        found.add(anchor)
    return found


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


class TestExamples:
    @pytest.mark.parametrize(
        "page", [p for p in PAGES if runnable(p)], ids=[_page_id(p) for p in PAGES if runnable(p)]
    )
    def test_marked_blocks_run_in_order(
        self, page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every marked block of the page runs without raising, sharing one namespace."""
        monkeypatch.chdir(tmp_path)
        # A real module, registered, so dataclasses and pickling find the blocks' classes.
        module = types.ModuleType(f"docs_example_{page.stem.replace('-', '_')}")
        monkeypatch.setitem(sys.modules, module.__name__, module)
        namespace = module.__dict__
        for block in runnable(page):
            # Pad with blank lines so a traceback names the line of the page itself.
            source = "\n" * (block.line - 1) + block.code
            try:
                exec(compile(source, str(page), "exec"), namespace)
            except Exception:
                pytest.fail(
                    f"the example at {_page_id(page)}:{block.line} raised:\n"
                    f"{traceback.format_exc()}",
                    pytrace=False,
                )

    def test_pages_with_examples_are_found(self) -> None:
        """The marker is recognised: the index page's example is among the runnable blocks."""
        assert runnable(DOCS / "index.md")

    def test_a_marker_needs_a_python_block(self) -> None:
        """A marker in front of anything but a Python block is a mistake, not a skipped test."""
        for page in PAGES:
            for block in blocks(page):
                assert not block.marked or block.language in ("python", "py"), (
                    f"{_page_id(page)}:{block.line}: {MARKER} before a {block.language!r} block"
                )


class TestLinks:
    @pytest.mark.parametrize("page", PAGES, ids=[_page_id(p) for p in PAGES])
    def test_relative_links_point_at_existing_files(self, page: Path) -> None:
        missing = [
            target
            for target in relative_links(page)
            if not (page.parent / target.split("#", 1)[0]).exists()
        ]
        assert missing == [], f"{_page_id(page)} links to files that do not exist: {missing}"

    @pytest.mark.parametrize("page", PAGES, ids=[_page_id(p) for p in PAGES])
    def test_anchors_point_at_existing_headings(self, page: Path) -> None:
        """``page.md#section`` and ``#section`` name a heading of the page they point at."""
        broken = []
        for target in [*relative_links(page), *_LOCAL_ANCHOR.findall(prose(page))]:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path) if path else page
            checkable = anchor and linked.suffix == ".md" and linked.exists()
            if checkable and anchor not in anchors(linked):
                broken.append(target)
        assert broken == [], f"{_page_id(page)} links to headings that do not exist: {broken}"

    @pytest.mark.parametrize("page", [DOCS / "index.md", ROOT / "README.md"], ids=_page_id)
    def test_every_docs_page_is_linked(self, page: Path) -> None:
        """The documentation index and the README list every page of docs/."""
        linked = {
            (page.parent / target.split("#", 1)[0]).resolve() for target in relative_links(page)
        }
        others = [p for p in sorted(DOCS.glob("*.md")) if p.resolve() != page.resolve()]
        unlinked = [p.name for p in others if p.resolve() not in linked]
        assert unlinked == [], f"{_page_id(page)} does not link to {unlinked}"
