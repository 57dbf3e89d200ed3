"""The documentation as checks: the README stays a front door, every relative link lands, no tracker numbers."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: The Markdown a reader is sent to: the README, docs/ (guides, evidence, design) and the folder READMEs.
PAGES = sorted([README, ROOT / "sweeps" / "README.md", ROOT / "results" / "README.md", *(ROOT / "docs").rglob("*.md")])

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\s*\d+", re.I)


def prose(text: str) -> str:
    """The text outside code blocks and code spans (a spec like ``tensor[path=…]`` is not a link)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def relative_links(path: Path) -> list[str]:
    targets = LINK.findall(prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^(https?:|mailto:|#)", t)]


def test_the_readme_is_a_front_door_of_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/guides or docs/evidence"


def test_the_pages_checked_include_the_guides_and_the_evidence():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"docs/design.md", "docs/evidence/leaderboards.md", "docs/guides/add-a-method.md"} <= names


def test_every_relative_link_resolves_to_an_existing_file():
    broken = []
    for page in PAGES:
        for target in relative_links(page):
            file = target.split("#", 1)[0]
            if not (page.parent / file).resolve().exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to nothing: " + "; ".join(broken)


def test_the_link_check_sees_links_and_skips_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[a](a.md) and [b](b.md#part), [web](https://x.org), [top](#top)\n`x[k](not-a-link)`\n")
    assert relative_links(page) == ["a.md", "b.md#part"]


def test_no_tracker_issue_numbers_in_the_readme_or_docs():
    found = [
        f"{page.relative_to(ROOT)}: {m.group(0)!r}"
        for page in PAGES
        for m in ISSUE_NUMBER.finditer(page.read_text(encoding="utf-8"))
    ]
    assert not found, "tracker issue numbers: " + "; ".join(found)
    # The detector itself: a tracker reference (built here, so this file names no real one) is caught,
    # ordinary prose with a number is not.
    n = 12
    assert ISSUE_NUMBER.search(f"since issue {n}") and ISSUE_NUMBER.search(f"(Issue #{n})")
    assert not ISSUE_NUMBER.search("issues a request, rank #5")
