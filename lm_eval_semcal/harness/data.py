"""Loading the evaluation datasets, from the Hugging Face hub or from a local file.

Every semcal task names its loader as lm-eval's `custom_dataset`, so the harness calls it
with the run's metadata: `--metadata data_files=PATH` (CLI) or `metadata={"data_files":
PATH}` (Python API) replaces the hub download with a local JSON or JSONL file in the hub
dataset's own schema. Either way each row gains three fields the task templates and the
filter read, whatever the dataset:

- `semcal_question`: the question text;
- `semcal_golds`: the list of gold answers (aliases), each a non-empty string;
- `semcal_id`: a stable id of the row.

A row without a usable gold answer is never scored: it is dropped before any generation
and reported in a warning that names the rows. A local file that cannot give rows at all
(missing, empty, not UTF-8, not JSON, a row without the dataset's fields, no usable row)
raises DataFileError, one line naming the file, the line at fault and the fix;
`check_data_file` is that check alone, which `semcal run` makes before the model loads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import datasets

from lm_eval_semcal.core.extraction import gsm8k_gold
from lm_eval_semcal.harness import releases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives on the hub and how to read its question and gold answers."""

    hf_path: str
    hf_name: str | None
    split: str
    required_fields: tuple[str, ...]
    question: Callable[[dict], str]
    golds: Callable[[dict], list[str]]
    row_id: Callable[[dict, int], str]
    # What is wrong with a row's gold field for this dataset's schema, or None.
    gold_field_problem: Callable[[Any], str | None]
    # Where a row's gold answers are, for the error that finds none.
    gold_format: str


def _triviaqa_golds(row: dict) -> list[str]:
    answer = row.get("answer") or {}
    return list(answer.get("aliases") or []) + list(answer.get("normalized_aliases") or [])


def _gsm8k_golds(row: dict) -> list[str]:
    gold = gsm8k_gold(row.get("answer") or "")
    return [gold] if gold is not None else []


def _triviaqa_answer_problem(answer: Any) -> str | None:
    if not isinstance(answer, dict) or not isinstance(answer.get("aliases"), list):
        return f"`answer` should be a dict with an `aliases` list, got {answer!r:.80}"
    return None


def _nq_open_answer_problem(answer: Any) -> str | None:
    if not isinstance(answer, list) or not all(isinstance(a, str) for a in answer):
        return f"`answer` should be a list of strings, got {answer!r:.80}"
    return None


def _simpleqa_answer_problem(answer: Any) -> str | None:
    if not isinstance(answer, str):
        return f"`answer` should be a string, got {answer!r:.80}"
    return None


def _gsm8k_answer_problem(answer: Any) -> str | None:
    if not isinstance(answer, str) or "####" not in answer:
        return f"`answer` should be a solution ending in '#### N', got {answer!r:.80}"
    return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


DATASETS: dict[str, DatasetSpec] = {
    "triviaqa": DatasetSpec(
        hf_path="mandarjoshi/trivia_qa",
        hf_name="rc.nocontext",
        split="validation",
        required_fields=("question", "answer"),
        question=lambda row: row["question"],
        golds=_triviaqa_golds,
        row_id=lambda row, i: str(row.get("question_id") or i),
        gold_field_problem=_triviaqa_answer_problem,
        gold_format="`answer.aliases`, a list of non-empty strings",
    ),
    "nq_open": DatasetSpec(
        hf_path="google-research-datasets/nq_open",
        hf_name="nq_open",
        split="validation",
        required_fields=("question", "answer"),
        question=lambda row: row["question"],
        golds=lambda row: _as_list(row.get("answer")),
        row_id=lambda row, i: str(i),
        gold_field_problem=_nq_open_answer_problem,
        gold_format="`answer`, a list of non-empty strings",
    ),
    "simpleqa": DatasetSpec(
        hf_path="basicv8vc/SimpleQA",
        hf_name=None,
        split="test",
        required_fields=("problem", "answer"),
        question=lambda row: row["problem"],
        golds=lambda row: _as_list(row.get("answer")),
        row_id=lambda row, i: str(i),
        gold_field_problem=_simpleqa_answer_problem,
        gold_format="`answer`, a non-empty string",
    ),
    "gsm8k": DatasetSpec(
        hf_path="openai/gsm8k",
        hf_name="main",
        split="test",
        required_fields=("question", "answer"),
        question=lambda row: row["question"],
        golds=_gsm8k_golds,
        row_id=lambda row, i: str(i),
        gold_field_problem=_gsm8k_answer_problem,
        gold_format="`answer`, a solution ending in '#### N'",
    ),
}


def _usable_golds(golds: list[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for gold in golds:
        if isinstance(gold, str) and gold.strip():
            seen.setdefault(gold.strip(), None)
    return list(seen)


class DataFileError(ValueError):
    """A local data file that cannot give its dataset's rows; the message is one line
    naming the file, the row at fault (1-based line of a JSONL file) and the fix."""


def _decoded(dataset: str, path: Path) -> str:
    data = path.read_bytes()
    try:
        # utf-8-sig: a byte-order mark, which `datasets` reads past, is no error.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataFileError(
            f"semcal {dataset}: {path} line {line} is not UTF-8 (byte 0x{data[err.start]:02x} at "
            f"column {column}); save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _numbered_rows(dataset: str, path: Path, text: str) -> list[tuple[str, Any]]:
    """Each row of a JSON Lines file (or of a JSON array) with where it is: "line N" ("row N")."""
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFileError(
                f"semcal {dataset}: {path} is not valid JSON ({err.msg} at line {err.lineno}, "
                f"column {err.colno}); fix it, or write one JSON object per line"
            ) from None
        return [(f"row {number}", row) for number, row in enumerate(rows, start=1)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise DataFileError(
                f"semcal {dataset}: {path} line {number} is not JSON ({err.msg} at column "
                f"{err.colno}); each line must hold one whole JSON object"
            ) from None
    return rows


def _check_rows(dataset: str, path: Path, rows: list[tuple[str, Any]]) -> None:
    spec = DATASETS[dataset]
    fields = ", ".join(spec.required_fields)
    if not rows:
        raise DataFileError(
            f"semcal {dataset}: {path} holds no rows; it needs one JSON object per line with "
            f"the fields {fields} of {spec.hf_path}"
        )
    usable = 0
    for index, (where, row) in enumerate(rows):
        if not isinstance(row, dict):
            raise DataFileError(
                f"semcal {dataset}: {path} {where} holds a JSON {type(row).__name__}, not an "
                f"object; each row is an object with the fields {fields}"
            )
        missing = [field for field in spec.required_fields if field not in row]
        if index == 0:
            # The first row tells a wrong dataset's file; a later row with a bad gold
            # answer is one unusable row, dropped and reported like any other.
            if missing:
                problem = f"{where} lacks field(s) {', '.join(missing)}"
            elif gold_problem := spec.gold_field_problem(row["answer"]):
                problem = f"{where}: {gold_problem}"
            else:
                problem = None
            if problem:
                raise DataFileError(
                    f"semcal {dataset}: {path} is not in the schema of {spec.hf_path} ({problem}); "
                    "several semcal datasets need a file each: "
                    f"--metadata '{{\"data_files\": {{\"{dataset}\": \"PATH.jsonl\", ...}}}}'"
                )
        if missing:
            raise DataFileError(
                f"semcal {dataset}: {path} {where} lacks field(s) {', '.join(missing)}; every row "
                f"needs {fields}: add them to that row or remove it"
            )
        usable += bool(str(spec.question(row) or "").strip() and _usable_golds(spec.golds(row)))
    if not usable:
        raise DataFileError(
            f"semcal {dataset}: {path} has no row with a usable question and gold answer (none "
            f"of its {len(rows)} rows; {rows[0][0]} has answer {rows[0][1]['answer']!r:.60}); "
            f"each row needs a non-empty `{spec.required_fields[0]}` and {spec.gold_format}"
        )


def check_data_file(dataset: str, data_files: str | Path | dict | None) -> None:
    """Raise DataFileError if the local file `data_files` gives `dataset` cannot be read.

    Args:
        dataset: triviaqa, nq_open, simpleqa or gsm8k.
        data_files: as for `load_semcal_dataset`; None (the hub dataset) or a dict
            without `dataset` has nothing to check.

    The file must exist, be UTF-8 JSON Lines (or one JSON array) of objects, every row
    must have the dataset's fields, the first row must be in its schema, and at least
    one row must hold a usable question and gold answer. It is read with the standard
    library, so the message can name the line at fault, which `datasets` cannot.
    """
    path = _data_file(dataset, data_files)
    if path is None:
        return
    if not path.is_file():
        raise DataFileError(
            f"semcal {dataset}: data_files={path} is not a file; pass a JSON or JSONL file "
            f"in the schema of {DATASETS[dataset].hf_path}"
        )
    _check_rows(dataset, path, _numbered_rows(dataset, path, _decoded(dataset, path)))


def _data_file(dataset: str, data_files: str | Path | dict | None) -> Path | None:
    """The file `data_files` gives `dataset`, or None for the hub dataset."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown semcal dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if isinstance(data_files, dict):
        unknown = sorted(set(data_files) - set(DATASETS))
        if unknown:
            raise DataFileError(
                f"data_files names unknown dataset(s) {', '.join(unknown)}; "
                f"the keys are {', '.join(DATASETS)}"
            )
        data_files = data_files.get(dataset)
    return None if data_files is None else Path(data_files).expanduser()


def _read_hub(dataset: str, spec: DatasetSpec) -> datasets.Dataset:
    try:
        return datasets.load_dataset(spec.hf_path, spec.hf_name, split=spec.split)
    except Exception as err:
        raise RuntimeError(
            f"semcal {dataset}: could not load {spec.hf_path} from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Without hub access pass a local copy: "
            f"{releases.metadata_option({'data_files': 'PATH.jsonl'})} (one dataset) or "
            f"--metadata '{{\"data_files\": {{\"{dataset}\": \"PATH.jsonl\"}}}}' (several)"
        ) from err


def add_semcal_fields(dataset: str, rows: datasets.Dataset) -> datasets.Dataset:
    """Add `semcal_question`, `semcal_golds`, `semcal_id`; drop and report gold-less rows."""
    spec = DATASETS[dataset]

    def standardise(row: dict, index: int) -> dict:
        return {
            "semcal_question": str(spec.question(row) or "").strip(),
            "semcal_golds": _usable_golds(spec.golds(row)),
            "semcal_id": spec.row_id(row, index),
        }

    rows = rows.map(standardise, with_indices=True, desc=f"semcal {dataset}: reading rows")
    unusable = [
        row_id
        for row_id, question, golds in zip(
            rows["semcal_id"], rows["semcal_question"], rows["semcal_golds"]
        )
        if not golds or not question
    ]
    if unusable:
        shown = ", ".join(unusable[:10]) + (" ..." if len(unusable) > 10 else "")
        log.warning(
            "semcal %s: %d of %d rows have no usable gold answer or question and are "
            "not scored (ids: %s)",
            dataset,
            len(unusable),
            len(rows),
            shown,
        )
        rows = rows.filter(lambda row: bool(row["semcal_golds"]) and bool(row["semcal_question"]))
    if len(rows) == 0:
        raise ValueError(f"semcal {dataset}: no row with a usable question and gold answer")
    return rows


def load_semcal_dataset(
    dataset: str, /, data_files: str | Path | dict | None = None, **_run_metadata: Any
) -> datasets.DatasetDict:
    """Load `dataset` (a key of DATASETS) as lm-eval's `custom_dataset` hook expects.

    Args:
        dataset: triviaqa, nq_open, simpleqa or gsm8k.
        data_files: a local JSON/JSONL file in the hub dataset's schema, or a dict from
            dataset name to such a file (to run several semcal datasets, e.g. the
            `semcal` group, offline); a dataset with no file is downloaded from the hub.
        **_run_metadata: the rest of the run's metadata (model args, version, ...), which
            lm-eval passes to every custom_dataset and which loading does not need.

    Returns:
        A DatasetDict holding the evaluation split under the hub dataset's split name.
    """
    path = _data_file(dataset, data_files)
    spec = DATASETS[dataset]
    if path is None:
        rows = _read_hub(dataset, spec)
    else:
        check_data_file(dataset, path)
        rows = datasets.load_dataset("json", data_files=str(path), split="train")
    return datasets.DatasetDict({spec.split: add_semcal_fields(dataset, rows)})


load_triviaqa = partial(load_semcal_dataset, "triviaqa")
load_nq_open = partial(load_semcal_dataset, "nq_open")
load_simpleqa = partial(load_semcal_dataset, "simpleqa")
load_gsm8k = partial(load_semcal_dataset, "gsm8k")
