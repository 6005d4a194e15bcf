"""README samples are whole: every code fence opens and closes on a line of its own.

A fence closed in the middle of a line (``-- =====```) swallows the rest of the document into one
code block on GitHub; an odd number of fences does the same at the end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *ROOT.glob("examples/*/README.md"),
               *ROOT.glob("example_app/*.md")])  # fmt: skip
FENCE = re.compile(r"^(\s*)(```+|~~~+)(.*)$")


def _blocks(text: str) -> list[tuple[int, int]]:
    """``(opening line, closing line)`` of each fenced block; raises on a fence that is not whole."""
    blocks, opened = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match is None:
            assert "```" not in line, f"line {number}: a fence in the middle of a line: {line!r}"
            continue
        if opened is None:
            opened = (number, match.group(2))
        else:
            assert match.group(3).strip() == "", f"line {number}: a closing fence with text after it"
            blocks.append((opened[0], number))
            opened = None
    assert opened is None, f"the fence opened on line {opened[0] if opened else 0} never closes"
    return blocks


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_is_closed(doc: Path) -> None:
    blocks = _blocks(doc.read_text())
    if doc.name == "README.md" and doc.parent == ROOT:
        assert len(blocks) > 20  # the check really read the README's samples


def test_a_fence_closed_mid_line_is_caught() -> None:
    with pytest.raises(AssertionError, match="in the middle of a line"):
        _blocks("```\n-- =====```\n")
    with pytest.raises(AssertionError, match="never closes"):
        _blocks("text\n```sh\nnocrud build\n")
