"""Shared test helpers: fixture paths, a scripted lm-eval LM, a tiny HF model, and hand-written metrics and bootstrap."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

# Nothing in the suite may reach the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Real data nobody here wrote, carried in the repository (tests/data/gsm8k/README.md).
GSM8K_DATA = Path(__file__).resolve().parent / "data" / "gsm8k"
GSM8K_TEST = GSM8K_DATA / "test.jsonl"
GSM8K_SOLUTIONS = GSM8K_DATA / "example_model_solutions.jsonl"

# The vLLM tests need vLLM, which only CI's third environment installs (docs/backends.md,
# "vLLM on a CPU"): elsewhere they are not collected, rather than reported skipped.
collect_ignore = [] if importlib.util.find_spec("vllm") else ["test_vllm.py"]


def generation_request(
    doc: dict, arguments: tuple, idx: int = 0, task: str = "fake_task", doc_id: int = 0, repeats: int = 1
) -> Instance:
    """A `generate_until` request as lm-eval builds one.

    lm-eval 0.4.13 reads the task, document and repeat count from `metadata` alone; 0.5
    requires them as fields (and still unpacks `metadata`). Given both ways, one call
    builds the same request on either release.
    """
    return Instance(
        request_type="generate_until", doc=doc, arguments=arguments, idx=idx,
        metadata=(task, doc_id, repeats), task_name=task, doc_id=doc_id, repeats=repeats,
    )


def filter_records(semcal_filter, resps: list, docs: list[dict]) -> list:
    """The per-question records `semcal_filter.apply(resps, docs)` returns.

    lm-eval 0.4.13 takes a filter's output for a question as the value itself, 0.5 as a
    list of values: unwrapped here, and held to exactly one record a question on 0.5.
    """
    from lm_eval_semcal.harness.releases import SCORER_PIPELINE

    outputs = semcal_filter.apply(resps, docs)
    return [record for (record,) in outputs] if SCORER_PIPELINE else outputs


class ScriptedLM(LM):
    """An lm-eval LM that answers each question with responses chosen by the test.

    `script` maps a question text to its responses; the k-th request for a question
    gets the k-th response (cycling), so with `repeats: M` and M responses every sample
    is known in advance.
    """

    def __init__(self, script: dict[str, list[str]] | Callable[[str], list[str]]) -> None:
        super().__init__()
        self.script = script
        self.calls: dict[str, int] = defaultdict(int)
        self.requests: list = []

    def _responses(self, question: str) -> list[str]:
        return self.script(question) if callable(self.script) else self.script[question]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for request in requests:
            self.requests.append(request)
            question = request.doc["semcal_question"]
            responses = self._responses(question)
            out.append(responses[self.calls[question] % len(responses)])
            self.calls[question] += 1
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("semcal tasks only generate")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("semcal tasks only generate")


@pytest.fixture
def scripted_lm() -> type[ScriptedLM]:
    return ScriptedLM


@pytest.fixture(autouse=True)
def rescue_dir(tmp_path, monkeypatch) -> Path:
    """Rescue files go to the test's own folder, never to ./semcal_rescue."""
    monkeypatch.setenv("SEMCAL_RESCUE_DIR", str(tmp_path / "rescue"))
    return tmp_path / "rescue"


# `semcal` as a command in a new process, indexing the semcal task folder alone (lm-eval's
# whole task index costs ~15 s a start): for tests that must signal or kill the process.
SEMCAL_COMMAND_SEMCAL_INDEX = [
    sys.executable,
    "-c",
    "import sys; from lm_eval.tasks import TaskManager; init = TaskManager.__init__; "
    "TaskManager.__init__ = lambda self, *args, **kwargs: init(self, *args, **{**kwargs, 'include_defaults': False}); "
    "from lm_eval_semcal.cli import main; sys.exit(main())",
]


@pytest.fixture
def in_process_run(monkeypatch):
    """`semcal run` in this process, without lm-eval's global logging setup and with an
    index of the semcal folder alone (lm-eval's whole task index costs ~15 s a run)."""
    from lm_eval.tasks import TaskManager

    from lm_eval_semcal.harness import evaluate

    init = TaskManager.__init__

    def semcal_folder_alone(self, *args, **kwargs):
        # lm-eval 0.5's CLI passes include_defaults=True itself: overrule it, not just its default.
        init(self, *args, **{**kwargs, "include_defaults": False})

    monkeypatch.setattr(evaluate, "setup_logging", lambda: None)
    monkeypatch.setattr(TaskManager, "__init__", semcal_folder_alone)
    monkeypatch.delenv("RANK", raising=False)


@pytest.fixture(autouse=True)
def no_bootstrap_by_default(monkeypatch):
    """Bootstrap intervals cost seconds per task; tests about them turn them back on."""
    monkeypatch.setenv("SEMCAL_BOOTSTRAP_ITERS", "0")


def save_scripted_run(
    out: Path, script: dict, task: str, bootstrap_iters: str, tasks_dir: Path | None = None, model: str = "scripted/lm",
    data_files: Path = FIXTURES / "triviaqa.jsonl", repeats: int = 4,
) -> Path:
    """`script` answers `task` (TriviaQA fixture, M = 4, unless `data_files` and `repeats`
    say otherwise) as model `model`, saved in `out` as `lm_eval run --output_path OUT
    --log_samples` saves it; `tasks_dir` adds task YAMLs."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from lm_eval_semcal.tasks import TASKS_DIR

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEMCAL_BOOTSTRAP_ITERS", bootstrap_iters)
        task_manager = TaskManager(
            include_path=[str(TASKS_DIR)] + ([str(tasks_dir)] if tasks_dir else []),
            include_defaults=False,
            metadata={"data_files": str(data_files), "repeats": repeats},
        )
        tracker = EvaluationTracker(output_path=str(out))
        results = simple_evaluate(
            model=ScriptedLM(script),
            model_args=f"pretrained={model}",
            tasks=[task],
            task_manager=task_manager,
            log_samples=True,
            bootstrap_iters=0,
            evaluation_tracker=tracker,
        )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return out


# --- metrics and the bootstrap, written from docs/metrics.md and the documented contract --
# Question by question, never through the package: the tests of the package's own
# vectorised paths compare against these.


def hand_brier(pairs):
    return sum((c - y) ** 2 for c, y in pairs) / len(pairs)


def hand_aurc(pairs):
    """The area under the risk-coverage curve: the questions answered in order of falling
    confidence, those of one confidence together, each step of coverage weighted by the
    error rate of all the questions answered at its end."""
    area, answered, wrong = 0.0, 0, 0.0
    for level in sorted({c for c, _ in pairs}, reverse=True):
        verdicts = [y for c, y in pairs if c == level]
        answered += len(verdicts)
        wrong += sum(1 - y for y in verdicts)
        area += len(verdicts) / len(pairs) * wrong / answered
    return area


def hand_bins(pairs, n_bins=10):
    """The (confidence, correct) pairs in each non-empty bin of docs/metrics.md, in order of first use."""
    bins = defaultdict(list)
    for c, y in pairs:
        bins[min(math.floor(c * n_bins + 1e-9), n_bins - 1)].append((c, y))
    return list(bins.values())


def hand_ece(pairs, n_bins=10):
    """The binned ECE of docs/metrics.md, question by question."""
    return sum(
        len(members) / len(pairs) * abs(sum(c for c, _ in members) / len(members) - sum(y for _, y in members) / len(members))
        for members in hand_bins(pairs, n_bins)
    )


def loop_debiased_squared_ce(conf, correct, n_bins=10):
    """Kumar et al.'s unbiased squared error, question by question, on the bins of docs/metrics.md."""
    total = 0.0
    for members in hand_bins(zip(conf, correct), n_bins):
        if len(members) < 2:
            continue
        mean_c = math.fsum(c for c, _ in members) / len(members)
        mean_y = math.fsum(y for _, y in members) / len(members)
        variance = mean_y * (1 - mean_y) / (len(members) - 1)
        total += len(members) / len(conf) * ((mean_c - mean_y) ** 2 - variance)
    return total


def binned_l2_plug_in(conf, correct, n_bins=10):
    """The plug-in squared binned error, the value the debiased one's resamples scatter around."""
    gaps = [[c - y for c, y in members] for members in hand_bins(zip(conf, correct), n_bins)]
    return sum(len(g) / len(conf) * (math.fsum(g) / len(g)) ** 2 for g in gaps)


def reference_resamples(rows: Sequence[tuple], iters: int, seed: int = 0) -> list[list[tuple]]:
    """The bootstrap resamples of `rows` (one tuple per question) as the package documents drawing them.

    The distinct rows, sorted, are drawn as counts multinomial(n, counts / n) from numpy's
    default_rng(seed), and each resample is expanded back to n rows in that order.
    """
    atoms = sorted(set(rows))
    counts = np.array([rows.count(atom) for atom in atoms])
    n = len(rows)
    # One draw of all the rows: the documented blocks hold up to 2**22 // len(atoms) rows.
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=iters)
    return [[atom for atom, k in zip(atoms, row) for _ in range(k)] for row in draws]


def reference_percentiles(stats: Sequence[float]) -> tuple[float, float]:
    """The 2.5th and 97.5th percentile, linearly interpolated between order statistics; NaN left out."""
    kept = sorted(value for value in stats if not math.isnan(value))

    def percentile(q):
        position = q / 100 * (len(kept) - 1)
        below = math.floor(position)
        above = min(below + 1, len(kept) - 1)
        return kept[below] + (position - below) * (kept[above] - kept[below])

    return percentile(2.5), percentile(97.5)


def reference_bootstrap(metric, confidence, correct, iters, seed=0):
    """A percentile bootstrap written from the documented contract, not from the package.

    Each resample of the (confidence, correct) pairs (`reference_resamples`) is scored
    with `metric`, a hand formula over a list of pairs; resamples where it is NaN are left
    out; the interval is `reference_percentiles` of the rest.
    """
    return reference_percentiles([metric(pairs) for pairs in reference_resamples(list(zip(confidence, correct)), iters, seed)])


def reference_paired_bootstrap(metric, confidence_a, correct_a, confidence_b, correct_b, iters, seed=0):
    """The percentiles of metric(a) - metric(b) over resamples that draw the same questions for both.

    The rows resampled are the questions' (confidence_a, correct_a, confidence_b,
    correct_b) tuples, as the package documents for its paired bootstrap; each model is
    scored on its half of each resampled row.
    """
    rows = list(zip(confidence_a, correct_a, confidence_b, correct_b))
    differences = [
        metric([(c_a, y_a) for c_a, y_a, _, _ in resample]) - metric([(c_b, y_b) for _, _, c_b, y_b in resample])
        for resample in reference_resamples(rows, iters, seed)
    ]
    return reference_percentiles(differences)
