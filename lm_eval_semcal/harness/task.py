"""The lm-eval task class behind every semcal task YAML (`class: !function ...SemcalTask`).

It is lm-eval's ConfigurableTask with the additions a sampling-based metric needs:

- run metadata overrides: `--metadata repeats=N` sets M, `--metadata grouping=NAME`
  (and `grouping_args={...}`) swaps the grouping of every semcal filter,
  `gold_match=same_class|contains` its rule for judging the gold answer;
- checks, before any generation, that the task really samples M >= 2 answers per
  question (`repeats >= 2`, `do_sample: true`, `temperature > 0`), that its filters end
  in a valid `semcal_grouping` step, and that the bootstrap resample count
  (`--metadata bootstrap_iters=N` or SEMCAL_BOOTSTRAP_ITERS) is readable, with a
  one-line error naming the task and the fix;
- a warning when every question's samples fell into a single class (the fixed-seed
  pitfall of some servers makes all M samples identical);
- if grouping the answers fails, the raw responses are written to a JSONL file before the
  error propagates, so no generated text is lost (see `harness.rescue`);
- a response holding a lone surrogate, which no UTF-8 file can hold (lm-eval would lose
  the task's whole samples file to it), has each replaced by U+FFFD before the filters
  read it, with one warning per task that counts the responses changed;
- under `--apply_chat_template`, the conversation opens with a short instruction stating
  the answer's form for the task's response style (`exemplars.chat_instruction`), in a
  system turn, or at the head of the first user turn when the model's template has no
  system turn. Without a chat template the prompt is lm-eval's, byte for byte.

Its aggregations are `harness.metric_hooks`' own, bound to the run's bootstrap resample count.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lm_eval.models.api_models import JsonChatStr

from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.spellings import renamed_settings
from lm_eval_semcal.grouping.scoring_step import in_todays_spelling, is_scoring_step, step_settings, with_step_settings
from lm_eval_semcal.harness import releases
from lm_eval_semcal.harness.exemplars import chat_instruction

# Importing these modules registers the `semcal_grouping` filter and the `semcal_*`
# aggregations that the task YAMLs name, before a task is built.
from lm_eval_semcal.harness.filter import FILTER_NAME, SemanticClassesFilter
from lm_eval_semcal.harness.metric_hooks import BOOTSTRAP_ITERS_KEY, aggregations, bootstrap_iters
from lm_eval_semcal.harness.rescue import write_rescue_file

log = logging.getLogger(__name__)

# The harness's filters that turn a question's M responses into one.
LIST_REDUCING_FILTERS = ("take_first", "majority_vote")


def _savable_text(response: Any) -> Any:
    """`response` with each lone surrogate replaced by U+FFFD (the same object when it has none).

    A surrogate pair that was never joined becomes its one character, as UTF-16 reads it.
    """
    if not isinstance(response, str):
        return response
    try:
        response.encode("utf-8")
    except UnicodeEncodeError:
        return response.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return response


class SemcalConfigError(ValueError):
    """A semcal task is configured in a way that cannot measure calibration."""


def _with_filter_overrides(filter_list: list[dict], overrides: dict[str, Any]) -> list[dict]:
    """`filter_list` with each scoring step in today's spelling (warning at release 0.1's) and `overrides` set."""
    filter_list = copy.deepcopy(filter_list)
    for pipeline in filter_list:
        pipeline["filter"] = [
            with_step_settings(in_todays_spelling(step, warn=True), overrides) if is_scoring_step(step) else step
            for step in pipeline.get("filter", [])
        ]
    return filter_list


def sampling_problems(repeats: int, generation_kwargs: dict[str, Any] | None) -> list[str]:
    """What stops a task config from drawing M independent samples, with the fix for each."""
    kwargs = generation_kwargs or {}
    problems = []
    if not isinstance(repeats, int) or repeats < 2:
        problems.append(
            f"repeats={repeats!r} but semantic confidence needs M >= 2 samples per question "
            f"(set {releases.repeats_option(50)}, or `semcal run --repeats 50`)"
        )
    if kwargs.get("do_sample") is not True:
        problems.append(
            f"do_sample={kwargs.get('do_sample')!r} gives M copies of the greedy answer "
            "(set --gen_kwargs do_sample=True)"
        )
    temperature = kwargs.get("temperature", 0.0)
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        problems.append(
            f"temperature={temperature!r} gives M copies of the greedy answer "
            "(set --gen_kwargs temperature=1.0)"
        )
    if kwargs.get("seed") is not None:
        problems.append(
            f"seed={kwargs['seed']!r} in the generation settings is sent with each of the M "
            "identical requests, and a seeded sampler (vLLM, OpenAI-compatible servers) "
            "returns the same sample every time; remove it and use --seed for reproducibility"
        )
    return problems


class SemcalTask(releases.GenerationTask):
    """lm-eval's generation task plus the overrides, checks and safeguards listed above."""

    def __init__(self, config: dict | None = None, **kwargs: Any) -> None:
        config = dict(config or {})
        config.pop("class", None)
        metadata = config.get("metadata") or {}
        if "repeats" in metadata:
            config["repeats"] = metadata["repeats"]
        try:
            run_settings = renamed_settings(metadata, warn=True)
            overrides = {key: run_settings[key] for key in ("grouping", "grouping_args", "gold_match") if key in run_settings}
            if config.get("filter_list"):
                config["filter_list"] = _with_filter_overrides(config["filter_list"], overrides)
        except ValueError as err:
            raise SemcalConfigError(f"{config.get('task')}: {err}") from None
        try:
            iters = bootstrap_iters(metadata)
        except ValueError:
            iters = None  # refused below, by _check_run_settings, with the task's name
        config["metric_list"] = releases.harness_metric_list(config.get("metric_list") or [], aggregations(iters))
        super().__init__(config=config, **kwargs)
        # Whether the model's chat template keeps a system turn (see `fewshot_context`).
        self._system_turn_kept = True
        self._check_filters()
        self._check_run_settings()

    def _check_filters(self) -> None:
        """Every pipeline must end in a valid `semcal_grouping` step, which process_results reads."""
        for pipeline in self.config.filter_list or [{}]:
            steps = pipeline.get("filter") or []
            if not steps or steps[-1].get("function") != FILTER_NAME:
                raise SemcalConfigError(
                    f"{self.config.task}: filter pipeline {pipeline.get('name')!r} must end with "
                    f"`- function: {FILTER_NAME}`, whose per-question record the metrics read"
                )
            for step in steps[:-1]:
                if step.get("function") in LIST_REDUCING_FILTERS:
                    raise SemcalConfigError(
                        f"{self.config.task}: filter pipeline {pipeline.get('name')!r} runs "
                        f"`{step['function']}` before {FILTER_NAME}, which would leave it one "
                        f"response instead of M; drop that step"
                    )
        for settings in self._semcal_filter_settings():
            try:
                SemanticClassesFilter.check_settings(**settings)
            except TypeError as err:
                raise SemcalConfigError(f"{self.config.task}: {FILTER_NAME}: {err}") from None
            except ValueError as err:
                raise SemcalConfigError(f"{self.config.task}: {err}") from None

    def _semcal_filter_settings(self) -> Iterable[dict[str, Any]]:
        """The settings of every `semcal_grouping` step of the task's filter pipelines."""
        for pipeline in self.config.filter_list or []:
            for step in pipeline.get("filter") or []:
                if step.get("function") == FILTER_NAME:
                    yield step_settings(step)

    def _check_run_settings(self) -> None:
        problems = sampling_problems(self.config.repeats, self.config.generation_kwargs)
        try:
            iters = bootstrap_iters(self.config.metadata)
        except ValueError as err:
            # Read again by the aggregations, after generation: refuse it now instead.
            problems.append(str(err))
        else:
            # The results JSON then says how the intervals were made; `semcal rescore` reads it.
            self.config.metadata = {**(self.config.metadata or {}), BOOTSTRAP_ITERS_KEY: iters}
        if problems:
            raise SemcalConfigError(f"{self.config.task}: " + "; ".join(problems))

    def aggregation(self) -> dict[str, Callable]:
        # The registered `semcal_*` aggregations, bound to this run's resample count.
        return {**super().aggregation(), **aggregations(bootstrap_iters(self.config.metadata))}

    def higher_is_better(self) -> dict[str, bool | None]:
        # As the task YAML gives it, `null` included (conf, an interval's ends: no better
        # direction), which lm-eval 0.5 reads as True (an up arrow beside `conf`).
        return {str(entry["metric"]): entry.get("higher_is_better") for entry in self.config.metric_list or []}

    def aggregate(self, bootstrap_iters: int | None = None) -> tuple[dict[str, Any], int]:
        # lm-eval 0.5 aggregates through the task (0.4.13 in its evaluator).
        return releases.aggregate_with_mean_stderr(self, super().aggregate, bootstrap_iters)

    def set_repeats(self, repeats: int) -> None:
        # lm-eval 0.5's --repeats N: M, as --metadata repeats=N sets it; both, unequal, is refused.
        from_metadata = (self.config.metadata or {}).get("repeats")
        if from_metadata is not None and from_metadata != repeats:
            raise SemcalConfigError(
                f"{self.config.task}: --repeats {repeats} and --metadata repeats={from_metadata} "
                "ask for different numbers of samples per question; give one of them"
            )
        super().set_repeats(repeats)
        self._check_run_settings()

    def doc_to_target(self, doc: dict, doc_to_target: Any = None) -> Any:
        return releases.text_target(super().doc_to_target(doc, doc_to_target))

    def chat_instruction(self) -> str:
        """The answer-form instruction of the task's first `semcal_grouping` step."""
        settings = next(iter(self._semcal_filter_settings()), {})
        return chat_instruction(settings.get("style", "concise"), settings.get("answer_type", "text"))

    def fewshot_context(
        self,
        doc: dict,
        num_fewshot: int,
        system_instruction: str | None = None,
        apply_chat_template: bool = False,
        fewshot_as_multiturn: bool = False,
        chat_template: Callable[..., str] | None = None,
        gen_prefix: str | None = None,
    ) -> str | list[str]:
        if apply_chat_template and chat_template:
            instruction = self.chat_instruction()
            system_instruction = releases.maybe_delimit(instruction, system_instruction, "\n\n")
            chat_template = self._rendering_the_instruction(chat_template, instruction)
        return super().fewshot_context(
            doc,
            num_fewshot,
            system_instruction=system_instruction,
            apply_chat_template=apply_chat_template,
            fewshot_as_multiturn=fewshot_as_multiturn,
            chat_template=chat_template,
            gen_prefix=gen_prefix,
        )

    def _rendering_the_instruction(self, chat_template: Callable[..., str], instruction: str) -> Callable[..., str]:
        """`chat_template`, made to keep the instruction when the template drops system turns.

        lm-eval's `hf` backend drops the system turn of a template that refuses one
        (Gemma's, say); the instruction then leads the first user turn instead. Whether
        the model's template keeps it is learnt from the first prompt rendered.
        """

        def render(messages: list[dict[str, str]], **kwargs: Any) -> str:
            if self._system_turn_kept:
                text = chat_template(messages, **kwargs)
                # API backends render the conversation as JSON (a JsonChatStr), where quotes are escaped.
                rendered = text.prompt if isinstance(text, JsonChatStr) else text
                self._system_turn_kept = instruction in rendered or json.dumps(instruction)[1:-1] in rendered
                if self._system_turn_kept:
                    return text
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            turns = [dict(m) for m in messages if m["role"] != "system"]
            first_user = next(turn for turn in turns if turn["role"] == "user")
            first_user["content"] = releases.maybe_delimit(system, first_user["content"], "\n\n")
            return chat_template(turns, **kwargs)

        return render

    def build_all_requests(self, **kwargs: Any) -> None:
        # --gen_kwargs is applied after the task is built: check again before generating.
        self._check_run_settings()
        self._preflight_filters()
        super().build_all_requests(**kwargs)

    def _preflight_filters(self) -> None:
        """Can each model-based B's model be resolved, its endpoint reached? Before any sampling."""
        for settings in self._semcal_filter_settings():
            try:
                SemanticClassesFilter.preflight(**settings)
            except Exception as err:  # noqa: BLE001 - any failure here would recur after generation
                first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise SemcalConfigError(f"{self.config.task}: {first_line}") from err

    def apply_filters(self) -> None:
        self._drop_padding_responses()
        self._make_responses_savable()
        try:
            super().apply_filters()
        except Exception as err:
            path = self._rescue_responses()
            raise RuntimeError(
                f"{self.config.task}: grouping the answers failed ({type(err).__name__}: {err}); "
                f"the {len(self._instances)} questions' raw responses are saved in {path}"
            ) from err
        self._warn_if_samples_identical()

    def _drop_padding_responses(self) -> None:
        # In a multi-process run lm-eval evens out the ranks by sending a short rank's
        # last request `repeats` more times; those responses land on the same instance.
        repeats = self.config.repeats
        for instance in self._instances:
            if len(instance.resps) > repeats:
                log.info(
                    "%s: doc %s got %d responses (rank padding); keeping the first %d",
                    self.config.task, instance.doc_id, len(instance.resps), repeats,
                )
                instance.resps = instance.resps[:repeats]

    def _make_responses_savable(self) -> None:
        # A lone surrogate (U+D800-U+DFFF) is valid in a JSON reply as a \u escape, but no
        # UTF-8 file can hold it: lm-eval then loses the task's whole samples file. Each
        # becomes U+FFFD here, where every backend's responses meet, before the filters
        # read them, so the records and the saved responses agree.
        changed = total = 0
        for instance in self._instances:
            total += len(instance.resps)
            savable = [_savable_text(response) for response in instance.resps]
            changed += sum(new is not old for new, old in zip(savable, instance.resps))
            instance.resps = savable
        if changed:
            log.warning(
                "%s: %d of %d responses held characters that cannot be saved (lone surrogates); "
                "each was replaced by U+FFFD",
                self.config.task, changed, total,
            )

    def _warn_if_samples_identical(self) -> None:
        records = [
            record
            for instance in self._instances
            for filtered in instance.filtered_resps.values()
            for record in (filtered if isinstance(filtered, list) else [filtered])
            if isinstance(record, QuestionRecord)
        ]
        if len(records) > 1 and all(record.confidence == 1.0 for record in records):
            log.warning(
                "%s: every question's %d samples fell into one class (confidence 1.0 "
                "everywhere). The samples look identical: check that sampling is on and "
                "that the backend does not fix one seed per request.",
                self.config.task,
                self.config.repeats,
            )

    def _rescue_responses(self) -> Path:
        return write_rescue_file(
            self.config.task,
            (
                {
                    "task": self.config.task,
                    "doc_id": instance.doc_id,
                    "semcal_question": instance.doc.get("semcal_question"),
                    "semcal_golds": instance.doc.get("semcal_golds"),
                    "prompt": instance.args[0],
                    "resps": instance.resps,
                }
                for instance in self._instances
            ),
        )
