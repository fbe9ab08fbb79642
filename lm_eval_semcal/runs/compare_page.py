"""The page of `semcal compare`: one list of blocks, written as Markdown and as HTML.

A block is a line of text (Markdown's `#` headings, **bold** and `code` in it), a `Table`
or an `Image`. `comparison.md` links the figures beside it; `comparison.html` holds them
inline, so that the page opens from disk alone.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lm_eval_semcal.core.metrics import INTERVAL_NOTES, calibration_verdict
from lm_eval_semcal.core.settings import CI_PERCENT, TEST_ALPHA, TEST_POWER
from lm_eval_semcal.runs.compare_numbers import Comparison, Estimate, Pair
from lm_eval_semcal.runs.show import number, with_interval

__all__ = ["Image", "Table", "page_blocks", "write_page"]

TITLE = "Semantic calibration: models compared"
# The page's precision: three decimals, so that an interval fits a table cell.
DIGITS = 3


@dataclass(frozen=True)
class Table:
    """A table block: its header cells and its rows of cells (Markdown's **bold** and `code` allowed)."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Image:
    """A figure block: the PNG written beside the page, and its alternative text."""

    path: Path
    alt: str


# --------------------------------------------------------------------------------------
# The blocks


def _with_interval(estimate: Estimate) -> str:
    return with_interval(estimate.value, estimate.low, estimate.high, DIGITS)


def _confidence_gap(estimate: Estimate) -> str:
    if not estimate.excludes_zero():
        return f"{_with_interval(estimate)} (within noise)"
    return f"{_with_interval(estimate)} ({'overconfident' if estimate.value > 0 else 'underconfident'})"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _models_blocks(comparison: Comparison) -> list[object]:
    """The page's opening, and the table of each model's numbers per task."""
    entries = comparison.entries
    return [
        f"# {TITLE}",
        (
            f"{_count(len({entry.run.name for entry in entries}), 'model')}, {_count(len(comparison.by_task), 'task')}. "
            f"Each interval is a {CI_PERCENT} bootstrap interval over questions ({comparison.bootstrap_iters} resamples); a "
            "difference is model_b minus model_a on the questions both answered, with the same resampled questions "
            "for both (paired)."
        ),
        "## Models and tasks",
        Table(
            ("task", "model", "n", "M", "B", "acc", "smECE", "conf minus acc"),
            [
                (entry.task, entry.name, str(entry.run.n_questions), entry.run.m_label, entry.run.grouping,
                 _with_interval(comparison.estimates(entry)["acc"]),
                 _with_interval(comparison.estimates(entry)["smece"]),
                 _confidence_gap(comparison.estimates(entry)["overconfidence"]))
                for entry in entries
            ],
        ),
        *INTERVAL_NOTES,
    ]


def _test_blocks(comparison: Comparison) -> list[object]:
    """Each model's calibration test of smECE, the Brier score's parts and its selective accuracy."""
    rows = []
    for entry in comparison.entries:
        values = {name: estimate.value for name, estimate in comparison.estimates(entry).items()}
        rows.append((
            entry.task, entry.name,
            f"{number(values['smece_noise_floor'], DIGITS)} / {number(values['smece_noise_p95'], DIGITS)}",
            calibration_verdict(values["smece_p_value"]),
            number(values["smece_detectable_overconfidence"], DIGITS),
            " / ".join(number(values[name], DIGITS) for name in (
                "brier_miscalibration", "brier_discrimination", "brier_uncertainty")),
            _with_interval(comparison.estimates(entry)["aurc"]),
            number(values["acc_at_50_coverage"], DIGITS), number(values["acc_at_80_coverage"], DIGITS),
        ))  # fmt: skip
    return [
        "## Is it calibrated? Calibration test, Brier parts, selective accuracy",
        (
            f"The calibration test draws {comparison.bootstrap_iters} runs of each model's questions whose verdicts are "
            "Bernoulli(confidence): the noise floor is their median smECE / 95th percentile, what a calibrated model "
            f"with these confidences shows; detectable: the least overconfidence the test finds with {TEST_POWER:.0%} "
            f"power at {TEST_ALPHA:.0%}. Brier parts: miscalibration / discrimination / uncertainty (CORP); AURC: area "
            "under the risk-coverage curve (lower is better); acc at 50% / 80%: accuracy on the most confident half / "
            "80% of the questions."
        ),
        Table(
            ("task", "model", "smECE noise floor", "calibration test", "detectable", "Brier MCB / DSC / UNC", "AURC",
             "acc at 50%", "acc at 80%"),
            rows,
        ),  # fmt: skip
    ]


def _differs_sentence(pair: Pair) -> str | None:
    """What a pair's two runs differ in, and how many questions they share; None when nothing needs saying."""
    if not pair.differs and len(pair.shared) >= max(pair.a.run.n_questions, pair.b.run.n_questions):
        return None
    return (
        f"{pair.a.task}: {pair.a.name} and {pair.b.name}"
        + (f" differ in {', '.join(pair.differs)};" if pair.differs else "")
        + f" compared on the {len(pair.shared)} questions both answered."
    )


def _pairs_blocks(comparison: Comparison) -> list[object]:
    """The table of paired differences, with a sentence for each pair that is not like for like."""
    shown = comparison.shown_pairs()
    if not shown:
        return []
    sentences = [sentence for pair, _ in shown if (sentence := _differs_sentence(pair)) is not None]
    return [
        "## Paired differences (model_b minus model_a)",
        "**Bold**: the interval excludes zero."
        + (f" The pairs given with --pair; all {len(comparison.pairs)} pairs are in pairs.csv." if comparison.chosen else ""),
        *sentences,
        Table(
            ("task", "model_a", "model_b", "metric", "difference", "n shared"),
            [
                (pair.a.task, pair.a.name, pair.b.name, name,
                 f"**{_with_interval(estimate)}**" if estimate.excludes_zero() else _with_interval(estimate),
                 str(len(pair.shared)))
                for pair, differences in shown
                for name, estimate in differences.items()
            ],
        ),
    ]


def page_blocks(
    comparison: Comparison, reliability: Sequence[Image], smece: Image, risk_coverage: Sequence[Image]
) -> list[object]:
    """The page: the models' tables, the reliability diagrams, the smECE figure, the
    risk-coverage curves and the pairs' table.

    Parameters
    ----------
    comparison : Comparison
        What `compare_numbers.compare` computed.
    reliability : sequence of Image
        The overlaid reliability diagram of each task.
    smece : Image
        The smECE figure (`--pair` pairs joined by arrows).
    risk_coverage : sequence of Image
        The risk-coverage curves of each task, one per model.

    Returns
    -------
    list
        Lines of text, `Table`s and `Image`s, in page order.
    """
    joined = " (pairs joined, arrow from the first to the second)" if comparison.chosen else ""
    return [
        *_models_blocks(comparison),
        *_test_blocks(comparison),
        "## Reliability diagrams",
        *reliability,
        f"## smECE per model{joined}",
        smece,
        "## Risk-coverage curves (the most confident answered first)",
        *risk_coverage,
        *_pairs_blocks(comparison),
    ]


# --------------------------------------------------------------------------------------
# Markdown and HTML


def _markdown(blocks: Sequence[object], out_dir: Path) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            lines += ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in block.rows]
        elif isinstance(block, Image):
            lines.append(f"![{block.alt}]({block.path.relative_to(out_dir).as_posix()})")
        else:
            lines.append(str(block))
        lines.append("")
    return "\n".join(lines)


_HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figures img { max-width: 520px; }
"""


def _inline(text: str) -> str:
    """Markdown's **bold** and `code` in a line of text, as HTML (everything else escaped)."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _html(blocks: Sequence[object], title: str) -> str:
    body: list[str] = []
    figures: list[str] = []

    def flush() -> None:
        if figures:
            body.append('<div class="figures">' + "".join(figures) + "</div>")
            figures.clear()

    for block in blocks:
        if isinstance(block, Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            figures.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">')
            continue
        flush()
        if isinstance(block, Table):
            head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif str(block).startswith("#"):
            level = len(str(block)) - len(str(block).lstrip("#"))
            body.append(f"<h{level}>{_inline(str(block)[level:].strip())}</h{level}>")
        else:
            body.append(f"<p>{_inline(str(block))}</p>")
    flush()
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{html.escape(title)}</title>\n'
        f"<style>{_HTML_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_page(blocks: Sequence[object], out_dir: Path) -> tuple[Path, Path]:
    """Write the blocks as `comparison.md` (linking the figures) and `comparison.html` (holding them)."""
    markdown, page = out_dir / "comparison.md", out_dir / "comparison.html"
    markdown.write_text(_markdown(blocks, out_dir), encoding="utf-8")
    page.write_text(_html(blocks, TITLE), encoding="utf-8")
    return markdown, page
