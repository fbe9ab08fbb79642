"""The repository stands alone: a clone with nothing beside it has its data, its
definitions and links that resolve, and its README is an entry page.

A clone, a wheel or a fork on another machine has no folder beside the repository, so no
file may name one, and every relative link in the Markdown pages must land on a file
(and, where it names one, a heading) inside the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

from conftest import GSM8K_DATA, GSM8K_SOLUTIONS, GSM8K_TEST, REPO_ROOT

README = REPO_ROOT / "README.md"
README_MAX_LINES = 250
# Folders a developer's machine may hold inside the checkout that are not the project's.
NOT_THE_PROJECTS = {".git", ".ci-venv", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist"}


def repository_files() -> list[Path]:
    """Every file of the project: git's tracked and new files in a checkout, else a walk."""
    if (REPO_ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO_ROOT, capture_output=True, check=True,
        ).stdout.decode("utf-8").split("\0")
        return sorted(REPO_ROOT / name for name in listed if name and (REPO_ROOT / name).is_file())
    found = []
    for folder, subfolders, names in os.walk(REPO_ROOT):
        subfolders[:] = [s for s in subfolders if s not in NOT_THE_PROJECTS and not s.endswith(".egg-info")]
        found.extend(Path(folder) / name for name in names)
    return sorted(found)


def markdown_pages() -> list[Path]:
    return [path for path in repository_files() if path.suffix == ".md"]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


# -------------------------------------------------------------------- nothing outside

# Built from parts so that this file does not match itself.
OUTSIDE = re.compile("|".join([
    r"\.\./" + "shared",              # the folder beside the checkout
    "shared" + r"/data\b",
    r"\b" + "SP" + "EC" + r"(\.md)?\b",  # the reference page that lives outside the repository
]))


def test_no_file_of_the_repository_reaches_outside_it():
    offenders = []
    for path in repository_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:100]}")
    assert not offenders, "files that name what lies outside the repository:\n" + "\n".join(offenders)


def test_the_gsm8k_data_and_its_licence_are_in_the_repository():
    assert GSM8K_DATA.is_relative_to(REPO_ROOT)
    test_rows = [json.loads(line) for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines()]
    solutions = [json.loads(line) for line in GSM8K_SOLUTIONS.read_text(encoding="utf-8").splitlines()]
    assert len(test_rows) == len(solutions) == 1319
    assert set(test_rows[0]) == {"question", "answer"}
    assert test_rows[0]["answer"].endswith("#### 18")
    assert {"question", "ground_truth", "6b_finetuning", "175b_verification"} <= set(solutions[0])
    licence = (GSM8K_DATA / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "Copyright (c) 2021 OpenAI" in licence
    provenance = (GSM8K_DATA / "README.md").read_text(encoding="utf-8")
    assert "openai/grade-school-math" in provenance and "MIT" in provenance


# -------------------------------------------------------------------- links

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
            lines.append("")
            continue
        lines.append("" if in_fence else re.sub(r"`[^`]*`", "``", line))
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = text.strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
        heading = None if in_fence else HEADING.match(line)
        if heading:
            anchor = github_anchor(heading.group(2))
            count = seen.get(anchor, 0)
            found.add(anchor if count == 0 else f"{anchor}-{count}")
            seen[anchor] = count + 1
    return found


def links(page: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in enumerate(prose_lines(page.read_text(encoding="utf-8")), 1):
        out.extend((number, target) for target in LINK.findall(line) + HTML_LINK.findall(line))
    return out


def broken_links(page: Path) -> list[str]:
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        where = f"{page.relative_to(REPO_ROOT)}:{number}: ({target})"
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.is_relative_to(REPO_ROOT.resolve()):
            broken.append(f"{where} leads out of the repository")
        elif not destination.exists():
            broken.append(f"{where} names no file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{where} names no heading of {destination.name}")
    return broken


def test_every_relative_link_of_every_page_resolves_inside_the_repository():
    pages = markdown_pages()
    assert README in pages and any(page.parent.name == "docs" for page in pages)
    broken = [problem for page in pages for problem in broken_links(page)]
    assert not broken, "\n".join(broken)


def test_the_link_checker_finds_what_is_broken(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO_ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Intervals: measured coverage\n\n## Tasks\n## Tasks\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md) [ok](docs/a.md#intervals-measured-coverage) [ok](docs/a.md#tasks-1)\n"
        "[ok](#tasks) ![ok](docs/a.md) [ok](https://example.org/x) `[code](nowhere.md)`\n"
        "# Tasks\n"
        "[gone](docs/b.md) [no heading](docs/a.md#metrics) [outside](../elsewhere/x.md)\n"
        '<img src="docs/missing.png">\n'
        "```\n[in a fence](fenced.md)\n```\n"
    )
    problems = broken_links(tmp_path / "README.md")
    assert [p.split(": ", 1)[1] for p in problems] == [
        "(docs/b.md) names no file",
        "(docs/a.md#metrics) names no heading of a.md",
        "(../elsewhere/x.md) leads out of the repository",
        "(docs/missing.png) names no file",
    ]
    assert [p.split(":")[1] for p in problems] == ["4", "4", "4", "5"]


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Intervals: measured coverage", "intervals-measured-coverage"),
    ("Plain `lm_eval`: no flag", "plain-lm_eval-no-flag"),
    ("`hf-semcal`: the `hf` backend, one prompt encoding per question", "hf-semcal-the-hf-backend-one-prompt-encoding-per-question"),
    ("Resuming: `--use_cache PATH`", "resuming---use_cache-path"),
    ("Normalisation (`normalize`)", "normalisation-normalize"),
])
def test_anchors_are_the_ones_github_writes(heading, anchor):
    assert github_anchor(heading) == anchor


# -------------------------------------------------------------------- the entry page

def test_the_readme_is_an_entry_page_with_the_three_blocks():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    for block in ("test-command", "run-command", "api-example"):
        assert text.count(f"<!-- {block} -->") == 1 and text.count(f"<!-- /{block} -->") == 1, block


def test_the_readme_leads_to_every_page_of_the_docs():
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    pages = sorted((REPO_ROOT / "docs").glob("*.md"))
    assert pages
    assert [page.name for page in pages if page.resolve() not in linked] == []
    assert (REPO_ROOT / "CONTRIBUTING.md").resolve() in linked


def test_every_metric_the_tool_reports_is_defined_in_the_metrics_page():
    from lm_eval_semcal.core.metrics import COMPARED_METRICS, METRICS

    page = (REPO_ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    defined = set(re.findall(r"^\| `(\w+)` \|", page, re.M))
    assert set(METRICS) | set(COMPARED_METRICS) <= defined
