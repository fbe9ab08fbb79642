"""The `semcal` command.

    semcal tasks-dir                 print the semcal task folder (lm_eval finds it without a flag)
    semcal run [--repeats N] [--bootstrap-iters N] LM_EVAL_ARGS...
                                     lm-eval's own `run`, with the semcal tasks included;
                                     with --use_cache PATH every sample is kept, and a rerun
                                     resumes where an interrupted run stopped
    semcal report RUN_DIR [--out DIR] [--bootstrap-iters N] [--diagram smooth|corp]
                                     reliability diagram, risk-coverage curve, Markdown table
                                     and calibration test per semcal task
    semcal rescore RUN_DIR --grouping B [--grouping-args JSON]
                                     regroup a saved run under another B, recompute metrics
    semcal agree RUN_DIR --grouping B1,B2,...
                                     metrics under several B and how their classes agree
    semcal compare RUN_DIR [RUN_DIR ...] --out DIR [--label NAME=LABEL] [--pair A=B]
                                     several models side by side: metrics.csv, pairs.csv
                                     (paired differences), comparison.md and .html
    semcal plan --overconfidence D (--run RUN_DIR | --confidences FILE) [--power P] [--alpha A]
                                     how many questions the calibration test needs to detect
                                     an overconfidence D, from a pilot's confidences
    semcal demo [--out DIR] [--samples M]
                                     a synthetic world, a base and a tuned model trained on it,
                                     and semantic calibration shown against the known truth
    semcal tiny-model DIR            save a tiny random-weight HF model for offline smoke runs

`semcal run` registers this package's backends (`hf-semcal`, `semcal-completions`) with
lm-eval before it resolves `--model`. `python -m lm_eval_semcal` is the same command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

# Only what `semcal --help` and `semcal tasks-dir` need is imported here (no numpy, no
# lm_eval): each command imports its own layer when it runs.
from lm_eval_semcal.core.scoring import GOLD_MATCHES
from lm_eval_semcal.core.settings import CI_PERCENT, DEFAULT_BOOTSTRAP_ITERS, TEST_ALPHA, TEST_POWER
from lm_eval_semcal.core.spellings import OLD_OPTIONS, old_spelling_message
from lm_eval_semcal.tasks import TASKS_DIR

# argparse %-formats help strings (not descriptions): a help names the level as this.
_CI_PERCENT_HELP = CI_PERCENT.replace("%", "%%")
_BOOTSTRAP_ITERS_HELP = (
    f"bootstrap resamples for the {_CI_PERCENT_HELP} intervals (default {DEFAULT_BOOTSTRAP_ITERS}; 0: none)"
)


def _positive_int(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object is needed, got {text!r}")
    return value


def _add_bootstrap_iters(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--bootstrap-iters",
        type=_positive_int(0),
        default=DEFAULT_BOOTSTRAP_ITERS,
        help=_BOOTSTRAP_ITERS_HELP,
    )


_ALLOW_PARTIAL_HELP = (
    "go on with a samples file that holds fewer questions than its results JSON counted (cut short), "
    "on the questions it holds; without it that is an error"
)


def _add_grouping(command: argparse.ArgumentParser, metavar: str, help: str, args_help: str) -> None:
    command.add_argument("--grouping", required=True, metavar=metavar, help=help)
    command.add_argument("--grouping-args", type=_json_object, metavar="JSON", help=args_help)


def _in_todays_spelling(argv: Sequence[str]) -> list[str]:
    """`argv` (of rescore or agree) with release 0.1's `--classes` and `--classes-args` replaced, with a warning."""
    todays = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        if name in OLD_OPTIONS:
            print(f"semcal {argv[0]}: warning: {old_spelling_message(name, OLD_OPTIONS[name])}", file=sys.stderr)
            arg = OLD_OPTIONS[name] + equals + value
        todays.append(arg)
    return todays


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semcal",
        allow_abbrev=False,
        description="Semantic calibration of language models with lm-evaluation-harness.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("tasks-dir", help="print the semcal task folder (plain lm_eval finds it without --include_path)")

    run = commands.add_parser(
        "run",
        allow_abbrev=False,
        help="run lm-eval with the semcal tasks included",
        description="Runs lm-eval's own `run` command with `--include_path` set to the "
        "semcal tasks. Every lm-eval option is accepted as is (see `lm_eval run -h`); "
        "`--use_cache PATH` also keeps every sampled generation in PATH_semcal_samples.db, "
        "so that the same command resumes an interrupted run.",
    )
    run.add_argument(
        "--repeats",
        type=_positive_int(2),
        help="M, the samples drawn per question (the tasks' default is 50)",
    )
    run.add_argument(
        "--bootstrap-iters",
        type=_positive_int(0),
        help=_BOOTSTRAP_ITERS_HELP,
    )
    run.add_argument(
        "--allow-fixed-seed",
        action="store_true",
        help="run an lm-eval API backend although it sends one fixed seed with every request",
    )

    report = commands.add_parser(
        "report",
        help="reliability diagrams and tables from a finished lm-eval run",
        description="Reads an lm-eval output folder (run with --output_path and "
        "--log_samples) and writes, for each semcal task found, a reliability diagram "
        f"and a risk-coverage curve (PNG) and a Markdown table of the metrics with their {CI_PERCENT} "
        "intervals and the calibration test of smECE (noise floor, p-value, verdict).",
    )
    report.add_argument("run_dir", help="the --output_path folder of an lm-eval run")
    report.add_argument("--out", help="where to write the report (default: RUN_DIR/semcal_report)")
    _add_bootstrap_iters(report)
    report.add_argument("--allow-partial", action="store_true", help=_ALLOW_PARTIAL_HELP)
    report.add_argument(
        "--diagram",
        choices=("smooth", "corp"),
        default="smooth",
        help="the reliability diagram: relplot's smoothed curve with its band (default), or the CORP "
        "diagram, the isotonic recalibration curve (a step function) against the diagonal",
    )

    plan = commands.add_parser(
        "plan",
        help="how many questions the calibration test needs to detect an overconfidence",
        description="Answers 'how many questions do I need to detect an overconfidence of D?' for the "
        "calibration test of smECE (consistency resampling; docs/metrics.md): a planned run whose "
        "confidences are distributed as a pilot's (a saved run's, per semcal task, on its k/M grid, or a "
        "file's) and whose model is right D less often than it says is rejected with the given power "
        "at the given level from the number printed on. Takes seconds to a few minutes per pilot.",
    )
    plan.add_argument(
        "--overconfidence", type=float, required=True, metavar="D",
        help="the shift to detect: the model right with probability confidence - D (e.g. 0.03)",
    )  # fmt: skip
    pilot = plan.add_mutually_exclusive_group(required=True)
    pilot.add_argument("--run", metavar="RUN_DIR", help="a saved lm-eval run (--output_path, --log_samples): its confidences")
    pilot.add_argument(
        "--confidences", metavar="FILE",
        help="a text file of confidences in [0, 1], separated by spaces, commas or new lines ('#' starts a comment)",
    )  # fmt: skip
    plan.add_argument("--power", type=float, default=TEST_POWER, help="the wanted power (default %(default)s)")
    plan.add_argument("--alpha", type=float, default=TEST_ALPHA, help="the test's level (default %(default)s)")
    plan.add_argument(
        "--iters", type=_positive_int(1), default=DEFAULT_BOOTSTRAP_ITERS,
        help="simulated runs per size tried (default %(default)s; at least 1 / alpha - 1)",
    )  # fmt: skip

    rescore = commands.add_parser(
        "rescore",
        help="regroup a saved run's samples under another B and recompute every metric",
        description="Reads an lm-eval output folder (run with --log_samples), groups every "
        "semcal task's saved responses again under the grouping B given by "
        "--grouping, and writes results and samples in lm-eval's layout to "
        "<model folder>/rescored-<B>/ (readable by `semcal report`), with the options used in its "
        "rescore.json; a folder made with other options is replaced only with --overwrite. Nothing is generated.",
    )
    rescore.add_argument("run_dir", help="the --output_path folder of an lm-eval run")
    _add_grouping(rescore, "B", "the grouping B (exact, normalize, numeric, ...)", "options of B, as a JSON object")
    rescore.add_argument(
        "--gold-match",
        choices=GOLD_MATCHES,
        help="how the gold answer is judged, replacing each task's own rule (same_class: the gold, pushed "
        "through B, lands in the plurality class; contains: a gold alias occurs in its representative)",
    )
    rescore.add_argument(
        "--bootstrap-iters",
        type=_positive_int(0),
        help=f"bootstrap resamples for the {_CI_PERCENT_HELP} intervals (default: the count the run used, else "
        f"{DEFAULT_BOOTSTRAP_ITERS}; 0: none)",
    )
    rescore.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a rescored-<B> folder made with other options (--grouping-args, --gold-match, "
        "--bootstrap-iters; recorded in its rescore.json); without it such a folder is left as it is and "
        "the command stops. A rerun with the same options replaces it anyway",
    )
    rescore.add_argument("--allow-partial", action="store_true", help=_ALLOW_PARTIAL_HELP)

    agree = commands.add_parser(
        "agree",
        help="how much B matters: metrics under several B and the agreement of their classes",
        description="Regroups a saved run's samples under each grouping of "
        "--grouping and prints, per semcal task, acc / conf / ece / smece under each and the "
        "mean adjusted Rand index between each pair's class assignments.",
    )
    agree.add_argument("run_dir", help="the --output_path folder of an lm-eval run")
    _add_grouping(
        agree,
        "B1,B2,...",
        "two or more groupings",
        'options per B, as a JSON object of objects: \'{"llm": {"model": "...", "base_url": "..."}}\'',
    )
    agree.add_argument("--gold-match", choices=GOLD_MATCHES, help="as for rescore")
    agree.add_argument("--allow-partial", action="store_true", help=_ALLOW_PARTIAL_HELP)

    compare = commands.add_parser(
        "compare",
        help="several models' runs side by side, with paired differences and one page",
        description="Reads lm-eval output folders (any number of models, rescored runs too) and "
        f"writes to --out: metrics.csv (per model, task and metric: value, {CI_PERCENT} interval, n), "
        "pairs.csv (per pair of models: the difference model_b minus model_a on the questions "
        "both answered, matched by document, with a paired bootstrap interval), comparison.md "
        "and comparison.html (one self-contained page with the figures inline).",
    )
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="lm-eval --output_path folders")
    compare.add_argument("--out", required=True, help="the folder to write to")
    compare.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME=LABEL",
        help="show the model recorded as NAME (its name, path or folder) as LABEL; repeatable",
    )
    compare.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="A=B",
        help="join model A to model B (e.g. base=instruct) in the smECE figure and list the pair first; repeatable",
    )
    _add_bootstrap_iters(compare)
    compare.add_argument("--allow-partial", action="store_true", help=_ALLOW_PARTIAL_HELP)

    demo = commands.add_parser(
        "demo",
        help="semantic calibration on a synthetic world with known answers, offline, on a CPU",
        description="Trains (first run only; cached in the user cache folder, ~/.cache/lm_eval_semcal/demo on Linux "
        "unless $XDG_CACHE_HOME moves it) a tiny model on a "
        "synthetic world whose answer distributions are known, and a tuned variant of it ($SEMCAL_DEMO_CACHE "
        "moves the cache); samples M answers "
        "per question from both through lm-eval (task semcal_synthetic, backend hf-semcal); prints the "
        "metrics under town and string classes, the noise floor of a perfectly calibrated predictor, the "
        "sampled confidence against the exact one as M grows, and the three findings; writes the run, "
        "reliability diagrams and tables to --out.",
    )
    demo.add_argument("--out", default="semcal_demo", help="where to write everything (default ./semcal_demo)")
    demo.add_argument(
        "--samples", type=_positive_int(50), default=50, help="M, samples per question (at least 50; default 50)"
    )
    demo.add_argument("--device", default="cpu", help="torch device for sampling (default cpu)")
    demo.add_argument("--batch-size", type=_positive_int(1), default=500, help="sampled rows per pass (default 500)")
    _add_bootstrap_iters(demo)

    tiny = commands.add_parser(
        "tiny-model",
        help="save a tiny random-weight HF causal LM for offline smoke runs",
        description="Trains a small tokenizer and saves it with a 2-layer random-weight "
        "GPT-2-style model in DIR (pass it as --model_args pretrained=DIR). Its answers "
        "are noise: it checks the pipeline, not a model.",
    )
    tiny.add_argument("dir", help="folder to write the model to")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["rescore"], ["agree"]):
        argv = _in_todays_spelling(argv)
    args, rest = parser.parse_known_args(argv)
    if args.command != "run" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    if args.command == "tasks-dir":
        print(TASKS_DIR)
    elif args.command == "run":
        from lm_eval_semcal.harness.evaluate import run_lm_eval

        run_lm_eval(rest, args.repeats, allow_fixed_seed=args.allow_fixed_seed, bootstrap_iters=args.bootstrap_iters)
    elif args.command == "report":
        from lm_eval_semcal.runs.report import write_reports
        from lm_eval_semcal.runs.saved import RunDirError

        try:
            written = write_reports(
                args.run_dir, out_dir=args.out, bootstrap_iters=args.bootstrap_iters, allow_partial=args.allow_partial,
                diagram=args.diagram,
            )
        except RunDirError as err:
            parser.exit(1, f"semcal report: error: {err}\n")
        for path in written:
            print(path)
    elif args.command == "compare":
        from lm_eval_semcal.runs.compare import compare_runs, parse_labels, parse_pairs
        from lm_eval_semcal.runs.saved import RunDirError

        try:
            written = compare_runs(
                args.run_dirs, args.out, labels=parse_labels(args.label), pairs=parse_pairs(args.pair),
                bootstrap_iters=args.bootstrap_iters, allow_partial=args.allow_partial,
            )  # fmt: skip
        except RunDirError as err:
            parser.exit(1, f"semcal compare: error: {err}\n")
        for path in written:
            print(path)
    elif args.command in ("rescore", "agree"):
        from lm_eval_semcal.grouping.llm_clients import LlmServerError
        from lm_eval_semcal.runs.agree import agreement, agreement_markdown
        from lm_eval_semcal.runs.rescore import RegroupingError, rescore_run
        from lm_eval_semcal.runs.saved import RunDirError

        try:
            if args.command == "rescore":
                written = rescore_run(
                    args.run_dir, args.grouping, args.grouping_args, args.gold_match, bootstrap_iters=args.bootstrap_iters,
                    overwrite=args.overwrite, allow_partial=args.allow_partial,
                )
                for path in written:
                    print(path)
            else:
                groupings = [name.strip() for name in args.grouping.split(",") if name.strip()]
                if len(groupings) < 2:
                    parser.error(f"agree: --grouping needs two or more groupings, got {args.grouping!r}")
                found = agreement(args.run_dir, groupings, args.grouping_args, args.gold_match, args.allow_partial)
                print(agreement_markdown(found))
        except (RunDirError, RegroupingError, OSError, ImportError, LlmServerError) as err:
            # Bad input, one line; any other error is a bug and keeps its traceback.
            # OSError / ImportError: a model-based B whose model or package cannot be loaded;
            # their messages run over many lines, the first says what is missing.
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            parser.exit(1, f"semcal {args.command}: error: {first_line}\n")
    elif args.command == "plan":
        from lm_eval_semcal.runs.plan import PlanError, check_overconfidence, pilots_from_file, pilots_from_run, plan

        try:
            overconfidence = check_overconfidence(args.overconfidence)
            pilots = pilots_from_run(args.run) if args.run else pilots_from_file(args.confidences)
            for line in plan(overconfidence, pilots, power=args.power, alpha=args.alpha, iters=args.iters):
                print(line)
        except (PlanError, ValueError) as err:
            parser.exit(1, f"semcal plan: error: {err}\n")
    elif args.command == "demo":
        from lm_eval_semcal.demo.run import markdown, run_demo

        try:
            result = run_demo(
                samples=args.samples, out_dir=args.out, device=args.device, batch_size=args.batch_size,
                bootstrap_iters=args.bootstrap_iters,
            )
        except ValueError as err:
            parser.exit(1, f"{err}\n")  # run_demo's messages name it already
        print(markdown(result))
    elif args.command == "tiny-model":
        from lm_eval_semcal.demo.tiny_model import build_tiny_model

        print(build_tiny_model(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
