"""A finished lm-eval run, read back from disk into typed records.

`lm_eval ... --output_path OUT --log_samples` writes, per run, `OUT/<model>/results_<date>.json`
and one `OUT/<model>/samples_<task>_<date>.jsonl` per task. Each logged sample of a semcal
task holds its question's record (`QuestionRecord`) as `filtered_resps`: `load_run`
reads every semcal task of a folder into a `TaskRun`, and `read_samples` gives a task's
raw logged samples (documents and responses) for regrouping.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from lm_eval_semcal.core.records import DamagedRecord, QuestionRecord

__all__ = ["RunDirError", "TaskRun", "doc_hash", "label_models", "load_run", "logged_record", "read_samples", "readable_name"]

log = logging.getLogger(__name__)

# lm-eval stamps every file of a run with datetime.now().isoformat(), ':' made '-'; the
# stamp is the only link between a results JSON and its samples files.
_DATE_RE = re.compile(r"_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json$")


class RunDirError(Exception):
    """The given path is not a reportable lm-eval run; the message says what to do."""


# --------------------------------------------------------------------------------------
# Reading a run


@dataclass(frozen=True, eq=False)
class TaskRun:
    """One semcal task (and filter) of an lm-eval run, read back from its results and samples files.

    `model` is the model's name as lm-eval recorded it (a hub id, a local path, an API
    model's name); `name` is what figures, tables and file names show.

    `doc_ids`, `doc_hashes` and `records` hold one entry per question in doc_id order
    (`doc_hashes`: lm-eval's hash of the question's document, which matches a question
    across runs whatever its position); `reported`
    maps each metric name (filter suffix dropped, e.g. "ece", "ece_ci_low") to the value
    lm-eval wrote into the results JSON; `results_questions` is the number of questions
    the results JSON says were evaluated (lm-eval's `n-samples` effective count; None
    when it records none).
    """

    task: str
    filter: str
    model: str
    model_dir: str
    results_file: Path
    samples_file: Path
    doc_ids: tuple[int, ...]
    doc_hashes: tuple[str, ...]
    records: tuple[QuestionRecord, ...]
    reported: dict[str, float]
    results_questions: int | None
    label: str | None = None

    @property
    def name(self) -> str:
        """The model's name for people: its label (`label_models`), else `readable_name(model)`."""
        return self.label or readable_name(self.model)

    @property
    def n_questions(self) -> int:
        return len(self.records)

    @property
    def lost_rows(self) -> str | None:
        """The sentence saying that the samples file holds fewer questions than the results JSON counted.

        None when it holds them all, or when the results JSON counts none.
        """
        if self.results_questions is None or self.n_questions >= self.results_questions:
            return None
        return (
            f"{self.samples_file} holds {self.n_questions} questions of {self.task}, its results file "
            f"{self.results_questions}: the samples file lost rows"
        )

    @cached_property
    def confidence(self) -> np.ndarray:
        """Each question's semantic confidence (plurality share)."""
        return np.array([record.confidence for record in self.records])

    @cached_property
    def correct(self) -> np.ndarray:
        """Each question's verdict on its plurality class, as 0.0 / 1.0."""
        return np.array([float(record.correct) for record in self.records])

    @cached_property
    def sample_counts(self) -> np.ndarray:
        return np.array([record.n_samples for record in self.records])

    @property
    def M(self) -> int | None:  # noqa: N802 - samples per question, M in docs/definitions.md
        """Samples per question, or None when questions were sampled a different number of times."""
        counts = set(self.sample_counts.tolist())
        return counts.pop() if len(counts) == 1 else None

    @property
    def m_label(self) -> str:
        if self.M is not None:
            return str(self.M)
        return f"{self.sample_counts.min()}-{self.sample_counts.max()} (differs between questions)"

    @property
    def grouping(self) -> str:
        return ", ".join(sorted({record.grouping for record in self.records}))


def _is_path(model: str) -> bool:
    # A hub id is "owner/name": one slash, not led by a path's marks.
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


def readable_name(model: str) -> str:
    """A model's name for people: a hub id or an API model's name as is, a local path's last part."""
    if not _is_path(model):
        return model
    parts = [part for part in re.split(r"[/\\]+", model) if part not in ("", ".", "~")]
    return parts[-1] if parts else model


def label_models(runs: Sequence[TaskRun], given: dict[str, str] | None = None) -> list[TaskRun]:
    """`runs` with a label each that tells their models apart, for figures, tables and file names.

    A label in `given` wins; its key is the model's recorded name, its folder name, or the
    path of its model folder or of the output folder holding it. Otherwise a hub id or an
    API model's name is kept as is, and each local path is cut to the fewest last parts
    that no other path ends with (`.../demo/77a5/base` and `.../demo/77a5/tuned` are
    `base` and `tuned`; `/data/run7/ckpt/model` beside `/data/run8/ckpt/model` is
    `run7/ckpt/model`). Of two folders still sharing a label, a rescored one gets its
    folder's name after it (`base (rescored-nli)`); one model run twice, its output
    folder's name (`base [cot]`).
    """
    given = given or {}
    folders = list(dict.fromkeys(run.results_file.parent for run in runs))
    model_of = {run.results_file.parent: run for run in runs}

    def given_label(folder: Path) -> str | None:
        run = model_of[folder]
        keys = {run.model, run.model_dir, str(folder), str(folder.resolve()), str(folder.parent), str(folder.parent.resolve())}
        matches = [label for key, label in given.items() if key in keys or str(Path(key).expanduser().resolve()) in keys]
        return matches[0] if matches else None

    labels: dict[Path, str] = {}
    paths: dict[Path, list[str]] = {}
    for folder in folders:
        model = model_of[folder].model
        if (label := given_label(folder)) is not None:
            labels[folder] = label
        elif _is_path(model):
            paths[folder] = [part for part in re.split(r"[/\\]+", model) if part not in ("", ".", "~")] or [model]
        else:
            labels[folder] = model
    distinct_models = {tuple(parts) for parts in paths.values()}
    for folder, parts in paths.items():
        others = [other for other in distinct_models if other != tuple(parts)]
        depth = next(
            (k for k in range(1, len(parts)) if all(tuple(parts[-k:]) != other[-k:] for other in others)), len(parts)
        )
        labels[folder] = "/".join(parts[-depth:])
    shared = Counter(labels.values())
    for folder in folders:
        if shared[labels[folder]] > 1 and folder.name.startswith("rescored-"):
            labels[folder] = f"{labels[folder]} ({folder.name})"
    shared = Counter(labels.values())
    for folder in folders:
        if shared[labels[folder]] > 1:
            labels[folder] = f"{labels[folder]} [{folder.parent.name}]"
    return [replace(run, label=labels[run.results_file.parent]) for run in runs]


@dataclass(frozen=True)
class _ResultsFile:
    path: Path
    date: str
    data: dict

    @property
    def model_dir(self) -> str:
        return str(self.data.get("model_name_sanitized") or self.path.parent.name)

    @property
    def model(self) -> str:
        return str(self.data.get("model_name") or self.data.get("config", {}).get("model") or self.model_dir)

    def questions(self, task: str) -> int | None:
        """How many questions of `task` lm-eval evaluated (its `n-samples` effective count), if recorded."""
        counts = self.data.get("n-samples")
        entry = counts.get(task) if isinstance(counts, dict) else None
        count = entry.get("effective") if isinstance(entry, dict) else None
        return count if isinstance(count, int) and not isinstance(count, bool) else None


def _read_results_file(path: Path) -> _ResultsFile | None:
    """The file as a results JSON of lm-eval, or None when it is some other JSON."""
    match = _DATE_RE.search(path.name)
    if match is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("configs"), dict):
        return None
    return _ResultsFile(path=path, date=match.group(1), data=data)


def _results_files(path: Path, rescores: bool = True) -> list[_ResultsFile]:
    if path.is_file():
        found = _read_results_file(path)
        if found is None:
            raise RunDirError(
                f"{path} is not an lm-eval results file (results_<date>.json): pass the "
                "--output_path folder of the run or one of its results JSONs"
            )
        return [found]
    # OUT holds one folder per model, and `semcal rescore` writes MODEL/rescored-<B>/ in
    # it; OUT may also be that model folder itself.
    candidates = sorted({*path.glob("*.json"), *path.glob("*/*.json"), *path.glob("*/rescored-*/*.json")})
    if not rescores:
        candidates = [file for file in candidates if file.parent == path or not file.parent.name.startswith("rescored-")]
    return [found for found in map(_read_results_file, candidates) if found is not None]


def _newest_per_task(files: Sequence[_ResultsFile]) -> dict[tuple[str, str, str], _ResultsFile]:
    """For each (folder, model folder, task), the newest results file that holds the task.

    A rescore (`MODEL/rescored-<B>/`) keeps its source's model and date stamp: its own
    folder tells it from the run it rescored, so both are read.
    """
    newest: dict[tuple[str, str, str], _ResultsFile] = {}
    # ISO stamps of one fixed layout sort as text in time order.
    for found in sorted(files, key=lambda f: f.date):
        for task in found.data["configs"]:
            newest[(str(found.path.parent), found.model_dir, task)] = found
    return newest


def doc_hash(sample: dict) -> str:
    """lm-eval's hash of a logged sample's document (its `doc_hash`, or computed as lm-eval
    computes it: SHA-256 of the document as JSON with indent 2, non-ASCII kept)."""
    logged = sample.get("doc_hash")
    if isinstance(logged, str) and logged:
        return logged
    text = json.dumps(sample.get("doc"), indent=2, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _records_by_filter(samples_file: Path) -> dict[str, list[tuple[int, str, QuestionRecord]]]:
    """Per filter, the (doc_id, doc hash, record) of every question; filters without records are left out.

    A filter's samples are semcal records either all or not at all; a mix means a damaged
    file, and is an error rather than a task to skip.
    """
    records: dict[str, list[tuple[int, str, QuestionRecord]]] = defaultdict(list)
    others: Counter[str] = Counter()
    with samples_file.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except json.JSONDecodeError as err:
                raise RunDirError(f"{samples_file}:{line_no} is not JSON ({err}); is the file complete?") from None
            name = str(sample.get("filter", "none"))
            try:
                record = logged_record(sample)
            except DamagedRecord as err:
                raise RunDirError(f"{samples_file}:{line_no}: {err}") from None
            except ValueError:
                others[name] += 1
                continue
            records[name].append((int(sample["doc_id"]), doc_hash(sample), record))
    mixed = sorted(set(records) & set(others))
    if mixed:
        raise RunDirError(
            f"{samples_file}: filter {mixed[0]!r} has {len(records[mixed[0]])} semcal records and "
            f"{others[mixed[0]]} samples that are not; the file looks damaged"
        )
    return dict(records)


def logged_record(sample: dict) -> QuestionRecord:
    """The record a semcal task's logged sample holds as its `filtered_resps`.

    lm-eval 0.4.13 logs `[record]`, 0.5 `[[record]]` (a filter's output for each
    question is a list there); the record itself as saved (a JSON string) or in memory.

    Raises:
        ValueError: the sample holds no one record (not a semcal sample).
        DamagedRecord: it holds one that cannot be read.
    """
    responses = sample.get("filtered_resps")
    if isinstance(responses, list) and len(responses) == 1 and isinstance(responses[0], list):
        responses = responses[0]
    if not isinstance(responses, list) or len(responses) != 1:
        raise ValueError("one record per question expected")
    return QuestionRecord.read(responses[0])


def _reported_metrics(task_results: dict, filter_name: str) -> dict[str, float]:
    suffix = f",{filter_name}"
    return {
        key[: -len(suffix)]: float(value)
        for key, value in task_results.items()
        if key.endswith(suffix)
        and not key[: -len(suffix)].endswith("_stderr")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


def _task_run(
    task: str, found: _ResultsFile, samples_file: Path, name: str, rows: list[tuple[int, str, QuestionRecord]]
) -> TaskRun:
    rows = sorted(rows, key=lambda row: row[0])
    return TaskRun(
        task=task,
        filter=name,
        model=found.model,
        model_dir=found.model_dir,
        results_file=found.path,
        samples_file=samples_file,
        doc_ids=tuple(doc_id for doc_id, _, _ in rows),
        doc_hashes=tuple(hashed for _, hashed, _ in rows),
        records=tuple(record for _, _, record in rows),
        reported=_reported_metrics(found.data.get("results", {}).get(task, {}), name),
        results_questions=found.questions(task),
    )


def _filter_runs(task: str, found: _ResultsFile, samples_file: Path, allow_partial: bool) -> list[TaskRun]:
    """A run per semcal filter of `task`, with a log line for what is odd; none (logged) when it is no semcal task."""
    by_filter = _records_by_filter(samples_file)
    if not by_filter:
        log.warning("skipping %s: not a semcal task (its samples hold no semcal question records)", task)
    runs = []
    for name, rows in sorted(by_filter.items()):
        run = _task_run(task, found, samples_file, name, rows)
        if run.lost_rows is not None:
            if not allow_partial:
                raise RunDirError(
                    f"{run.lost_rows}; rerun the task, or pass --allow-partial to go on with the {run.n_questions}"
                )
            log.warning("%s; going on with the %d (--allow-partial)", run.lost_rows, run.n_questions)
        if run.M is None:
            log.warning("%s: questions have different numbers of samples, M = %s", task, run.m_label)
        runs.append(run)
    return runs


def load_run(path: str | Path, allow_partial: bool = False, rescores: bool = True) -> list[TaskRun]:
    """Every semcal task of an lm-eval output folder, from its newest run.

    Parameters
    ----------
    path : str or Path
        lm-eval's `--output_path` folder (holding one folder per model), one model's folder,
        or one results JSON.
    allow_partial : bool, default False
        Read a samples file that holds fewer questions than its results JSON counted (one
        cut short) with a warning, instead of raising RunDirError.
    rescores : bool, default True
        Read the rescores that `semcal rescore` wrote beside each model's runs
        (`MODEL/rescored-<B>/`) too, each as a run of its own. False: the runs that lm-eval
        wrote alone (what a rescore reads), unless `path` is a rescored folder itself.

    Returns
    -------
    list of TaskRun
        One per semcal task (and filter) and model folder, sorted by model folder and task,
        each read from the newest results JSON holding the task and the samples file with
        the same date stamp. Tasks whose samples are not semcal records are skipped with a
        log line.

    Raises
    ------
    RunDirError
        The path is missing, holds no results JSON, its newest results have no samples
        files, none of its tasks is a semcal task, or (unless `allow_partial`) a samples
        file lost rows.
    """
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path} does not exist: pass the --output_path folder of an lm-eval run")
    newest = _newest_per_task(_results_files(path, rescores))
    if not newest:
        raise RunDirError(
            f"no lm-eval results JSON (results_<date>.json) in {path} or its subfolders: "
            "run lm_eval with --output_path"
        )

    runs: list[TaskRun] = []
    without_samples: list[str] = []
    for (_, _, task), found in sorted(newest.items()):
        samples_file = found.path.parent / f"samples_{task}_{found.date}.jsonl"
        if not samples_file.is_file():
            without_samples.append(task)
            log.warning("skipping %s: %s has no samples file %s", task, found.path.name, samples_file.name)
            continue
        runs += _filter_runs(task, found, samples_file, allow_partial)

    if runs:
        return label_models(runs)
    if without_samples:
        raise RunDirError(
            f"{path} has results but no samples files (for {', '.join(without_samples)}): re-run "
            "with --log_samples: the report needs per-question records"
        )
    raise RunDirError(
        f"no semcal task in {path}: the samples of {', '.join(sorted(t for _, t in newest))} hold "
        "no semcal question records (from the semcal_grouping filter)"
    )


def read_samples(run: TaskRun) -> list[dict]:
    """The run's logged samples of its filter (document, arguments, raw responses), in doc_id order."""
    samples = []
    with run.samples_file.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip() and (sample := json.loads(line)).get("filter", "none") == run.filter:
                samples.append(sample)
    samples.sort(key=lambda sample: int(sample["doc_id"]))
    return samples
