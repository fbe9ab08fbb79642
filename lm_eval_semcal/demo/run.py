"""`semcal demo`: semantic calibration shown on a world whose answers are known.

Trains (or finds in the cache) the demo's two models (`demo_model`), samples M answers per
question from each through lm-eval itself (task `semcal_synthetic`, backend `hf-semcal`),
and compares, per model:

- the metrics under the entity grouping (a town's three surface forms one class) and
  under the raw-string grouping `exact`;
- the sampled confidence (plurality share of M samples) with the model's exact top-class
  probability, computed by teacher forcing, per question, in aggregate, and as M grows;
- the smECE of a perfectly calibrated predictor with the same questions and M (the
  world's own answer distribution, sampled the same way): the noise floor.

It writes the lm-eval run, `semcal report`'s reliability diagrams and tables,
`demo.md` / `demo.json` with everything printed, and `per_question.jsonl` with each
question's exact and sampled confidence per model.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lm_eval_semcal.core import calibration
from lm_eval_semcal.core.estimators import first_m_estimates
from lm_eval_semcal.core.semantic_classes import plurality
from lm_eval_semcal.core.settings import DEFAULT_BOOTSTRAP_ITERS
from lm_eval_semcal.demo import models as demo_model
from lm_eval_semcal.demo import world as synthetic
from lm_eval_semcal.grouping.torch_devices import check_device
from lm_eval_semcal.runs.compare import compare_runs
from lm_eval_semcal.runs.report import TaskReport, report_runs
from lm_eval_semcal.runs.saved import load_run

M_STEPS = (5, 10, 20, 50)
NOISE_FLOOR_RUNS = 200
# The findings the demo checks (and the test suite with it).
BASE_SMECE_MAX = 0.06
SAMPLED_EXACT_SMECE_GAP_MAX = 0.03
TUNED_OVERCONFIDENCE_MIN = 0.10


@dataclass
class ModelResult:
    """One model's numbers: per grouping, and against its exact probabilities."""

    name: str
    model_dir: str
    metrics: dict[str, dict[str, float]]  # grouping -> metric -> value
    intervals: dict[str, dict[str, tuple[float, float]]]
    exact_smece: float
    exact_confidence: float
    mean_abs_error: float  # mean over questions of |plurality share - exact top probability|
    convergence: dict[int, dict[str, float]] = field(default_factory=dict)  # M -> smece, mean_abs_error


@dataclass
class DemoResult:
    config: demo_model.DemoConfig
    samples: int
    n_questions: int
    models: dict[str, ModelResult]
    noise_floor: dict[str, float]
    findings: list[tuple[str, bool]]
    out_dir: Path


def noise_floor(world: synthetic.World, samples: int, runs: int = NOISE_FLOOR_RUNS, seed: int = 0) -> dict[str, float]:
    """smECE of a perfectly calibrated predictor on these questions, `runs` times.

    The predictor is the world's own answer distribution, sampled `samples` times per
    question, its plurality chosen as the model's is (ties: the answer sampled first) and
    judged against the same gold answers the models face.
    """
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(runs):
        confidence, correct = [], []
        for q in world.questions:
            towns = [town for town, _ in q.counts]
            weights = np.array([count for _, count in q.counts]) / synthetic.LINES_PER_QUESTION
            drawn = rng.choice(len(towns), size=samples, p=weights)
            # Number the sampled towns by first appearance, as the model's classes are.
            order = {town: k for k, town in enumerate(dict.fromkeys(drawn.tolist()))}
            top, share = plurality([order[t] for t in drawn.tolist()])
            first_seen = next(t for t, k in order.items() if k == top)
            confidence.append(share)
            correct.append(towns[first_seen] == q.gold)
        values.append(calibration.smece(np.array(confidence), np.array(correct)))
    return {"median": float(np.median(values)), "p95": float(np.quantile(values, 0.95))}


def _evaluate(model_dir: Path, config: demo_model.DemoConfig, samples: int, out_dir: Path, device: str,
              batch_size: int, seed: int) -> None:
    """Sample through lm-eval (hf-semcal) and save the run as `lm_eval --output_path --log_samples` does."""
    from lm_eval_semcal.harness.evaluate import evaluate_and_save

    evaluate_and_save(
        ["semcal_synthetic"],
        out_dir,
        metadata={
            "repeats": samples, "world_seed": config.world_seed, "n_questions": config.n_questions,
            # The demo's intervals come from the scoring below, not from lm-eval's aggregations.
            "bootstrap_iters": 0,
        },
        model="hf-semcal",
        model_args=f"pretrained={model_dir},dtype=float32",
        device=device,
        batch_size=batch_size,
        bootstrap_iters=0,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
    )


def _progress_bars():
    """A `demo_model.Progress` callback drawing one tqdm bar per training stage."""
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = tqdm(total=total, desc=f"semcal demo: {stage}", unit="step")
        bar = bars[stage]
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return progress


def _score_model(
    name: str, model_dir: Path, by_grouping: dict[str, TaskReport], world: synthetic.World, device: str
) -> tuple[ModelResult, list[dict]]:
    """One model's numbers against its exact probabilities, and its per-question rows."""
    probabilities = demo_model.town_probabilities(model_dir, world, device=device)
    exact_confidence = probabilities.max(1)
    exact_correct = probabilities.argmax(1) == np.array([q.gold for q in world.questions])
    metrics = {grouping: dict(report.values) for grouping, report in by_grouping.items()}
    intervals = {grouping: dict(report.intervals) for grouping, report in by_grouping.items()}
    towns = by_grouping["towns"].run
    rows = [
        {
            "model": name,
            "question": q.text,
            "gold": world.towns[q.gold].name,
            "true_top_probability": q.true_top_probability,
            "exact_top_town": world.towns[int(row.argmax())].name,
            "exact_top_probability": float(row.max()),
            "sampled_confidence": float(share),
            "correct": bool(right),
        }
        for q, row, share, right in zip(world.questions, probabilities, towns.confidence, towns.correct, strict=True)
    ]
    convergence = {}
    for m in M_STEPS:
        confidence, correct = first_m_estimates(towns.records, m)
        convergence[m] = {
            "smece": calibration.smece(confidence, correct),
            "mean_abs_error": float(np.mean(np.abs(confidence - exact_confidence))),
        }
    result = ModelResult(
        name=name,
        model_dir=str(model_dir),
        metrics=metrics,
        intervals=intervals,
        exact_smece=calibration.smece(exact_confidence, exact_correct),
        exact_confidence=float(exact_confidence.mean()),
        mean_abs_error=float(np.mean(np.abs(towns.confidence - exact_confidence))),
        convergence=convergence,
    )
    return result, rows


# What the demo writes in its output folder, and the file there that lists them once written.
DEMO_FOLDERS = ("lm_eval", "report", "comparison")
DEMO_FILES = ("world.jsonl", "demo.md", "demo.json", "per_question.jsonl")
OUTPUTS_FILE = ".semcal-demo.json"


def claim_out_dir(out_dir: Path) -> None:
    """Make `out_dir` the demo's, clearing the folders an earlier demo wrote there.

    The demo replaces only what a demo wrote (listed in `OUTPUTS_FILE`): a folder or file
    of one of its names that is not listed is the user's, and a ValueError naming them
    stops the demo before it trains or samples.
    """
    listed = out_dir / OUTPUTS_FILE
    written = set(json.loads(listed.read_text(encoding="utf-8"))) if listed.is_file() else set()
    theirs = [name for name in DEMO_FOLDERS + DEMO_FILES if os.path.lexists(out_dir / name) and name not in written]
    if theirs:
        raise ValueError(
            f"semcal demo: {out_dir} holds {', '.join(theirs)}, which the demo did not write and would replace; "
            "choose another --out, or move them"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    listed.write_text(json.dumps(DEMO_FOLDERS + DEMO_FILES), encoding="utf-8")
    # This run's files only: a folder left by an earlier demo would mix its runs into the tables.
    for folder in DEMO_FOLDERS:
        if (out_dir / folder).exists():
            shutil.rmtree(out_dir / folder)


def run_demo(
    config: demo_model.DemoConfig = demo_model.DemoConfig(),
    samples: int = 50,
    out_dir: str | Path = "semcal_demo",
    device: str = "cpu",
    batch_size: int = 500,
    bootstrap_iters: int = DEFAULT_BOOTSTRAP_ITERS,
    seed: int = 1234,
) -> DemoResult:
    """Train or load the two models, sample, score and write everything under `out_dir`."""
    if samples < max(M_STEPS):
        raise ValueError(f"semcal demo: --samples {samples}; at least {max(M_STEPS)} to show the convergence over M")
    check_device(device, "semcal demo")
    out_dir = Path(out_dir)
    claim_out_dir(out_dir)
    models = dict(zip(("base", "tuned"), demo_model.trained_models(config, _progress_bars()), strict=True))
    world = synthetic.build_world(config.world_seed, config.n_questions)
    synthetic.write_evaluation_file(world, out_dir / "world.jsonl")
    run_dir = out_dir / "lm_eval"
    for model_dir in models.values():
        _evaluate(model_dir, config, samples, run_dir, device, batch_size, seed)
    reports, _ = report_runs(load_run(run_dir), out_dir / "report", bootstrap_iters)
    compare_runs([run_dir], out_dir / "comparison", pairs=[("base", "tuned")], bootstrap_iters=bootstrap_iters)

    by_run = {(report.run.model_dir, report.run.filter): report for report in reports}
    results: dict[str, ModelResult] = {}
    per_question: list[dict] = []
    for name, model_dir in models.items():
        by_grouping = {
            grouping: next(
                report for (folder, filt), report in by_run.items() if filt == pipeline and folder.endswith(name)
            )
            for grouping, pipeline in (("towns", "semcal"), ("strings", "semcal_exact"))
        }
        results[name], rows = _score_model(name, model_dir, by_grouping, world, device)
        per_question += rows
    floor = noise_floor(world, samples)
    result = DemoResult(config, samples, len(world.questions), results, floor, findings(results), out_dir)
    (out_dir / "demo.md").write_text(markdown(result), encoding="utf-8")
    (out_dir / "demo.json").write_text(json.dumps(_no_nan(as_json(result)), indent=2), encoding="utf-8")
    (out_dir / "per_question.jsonl").write_text("".join(json.dumps(row) + "\n" for row in per_question), encoding="utf-8")
    return result


def findings(models: dict[str, ModelResult]) -> list[tuple[str, bool]]:
    """The three findings, each with whether this run shows it."""
    base, tuned = models["base"], models["tuned"]
    base_towns, base_strings, tuned_towns = base.metrics["towns"], base.metrics["strings"], tuned.metrics["towns"]
    return [
        (
            f"base model calibrated: smECE {base_towns['smece']:.3f} <= {BASE_SMECE_MAX}, and within "
            f"{SAMPLED_EXACT_SMECE_GAP_MAX} of the exact smECE {base.exact_smece:.3f}",
            base_towns["smece"] <= BASE_SMECE_MAX
            and abs(base_towns["smece"] - base.exact_smece) <= SAMPLED_EXACT_SMECE_GAP_MAX,
        ),
        (
            f"tuned model overconfident: conf - acc = {tuned_towns['conf'] - tuned_towns['acc']:+.3f} "
            f">= {TUNED_OVERCONFIDENCE_MIN}",
            tuned_towns["conf"] - tuned_towns["acc"] >= TUNED_OVERCONFIDENCE_MIN,
        ),
        (
            f"string classes make the base model look underconfident: conf - acc = "
            f"{base_strings['conf'] - base_strings['acc']:+.3f} under exact strings, "
            f"{base_towns['conf'] - base_towns['acc']:+.3f} under towns",
            base_strings["conf"] - base_strings["acc"] < min(0.0, base_towns["conf"] - base_towns["acc"]),
        ),
    ]


def _cell(result: ModelResult, grouping: str, metric: str) -> str:
    value = result.metrics[grouping][metric]
    low, high = result.intervals[grouping].get(metric, (float("nan"), float("nan")))
    return f"{value:.3f}" if np.isnan(low) else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def markdown(result: DemoResult) -> str:
    """Everything the demo shows, as Markdown (what it prints)."""
    lines = [
        f"# semcal demo: {result.n_questions} questions, M = {result.samples} samples each",
        "",
        "| model | classes | acc | conf | ece | smece | brier | auroc |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, model in result.models.items():
        for grouping in ("towns", "strings"):
            lines.append(
                f"| {name} | {grouping} | {model.metrics[grouping]['acc']:.3f} | {model.metrics[grouping]['conf']:.3f} | "
                + " | ".join(_cell(model, grouping, metric) for metric in ("ece", "smece", "brier", "auroc"))
                + " |"
            )
    lines += [
        "",
        f"Noise floor: a perfectly calibrated predictor (the world's own answer distribution) with these "
        f"questions, gold answers and M scores smECE "
        f"{result.noise_floor['median']:.3f} (median of {NOISE_FLOOR_RUNS} runs; 95th percentile "
        f"{result.noise_floor['p95']:.3f}).",
        "",
        "Sampled against exact (towns; exact = the model's own top-town probability, by teacher forcing):",
        "",
        "| model | exact conf | exact smECE | " + " | ".join(f"smECE, M={m}" for m in M_STEPS)
        + " | " + " | ".join(f"mean abs error, M={m}" for m in M_STEPS) + " |",
        "|---|---:|---:|" + "---:|" * (2 * len(M_STEPS)),
    ]
    for name, model in result.models.items():
        lines.append(
            f"| {name} | {model.exact_confidence:.3f} | {model.exact_smece:.3f} | "
            + " | ".join(f"{model.convergence[m]['smece']:.3f}" for m in M_STEPS) + " | "
            + " | ".join(f"{model.convergence[m]['mean_abs_error']:.3f}" for m in M_STEPS) + " |"
        )
    lines += ["", "Findings:", ""]
    lines += [f"- [{'x' if shown else ' '}] {text}" for text, shown in result.findings]
    lines += [
        "",
        f"Reliability diagrams and per-task tables: {result.out_dir / 'report'}",
        f"Base against tuned, paired differences with intervals: {result.out_dir / 'comparison' / 'comparison.html'}",
        "",
    ]
    return "\n".join(lines)


def _no_nan(value):
    """JSON has no NaN (an interval with --bootstrap-iters 0): null instead."""
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(item) for item in value]
    return value


def as_json(result: DemoResult) -> dict:
    return {
        "config": asdict(result.config),
        "samples": result.samples,
        "n_questions": result.n_questions,
        "models": {name: asdict(model) for name, model in result.models.items()},
        "noise_floor": result.noise_floor,
        "findings": [{"finding": text, "shown": shown} for text, shown in result.findings],
    }
