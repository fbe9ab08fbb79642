"""Instruct models: under a chat template the prompt states the answer's form; base prompts are lm-eval's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, GSM8K_TEST
from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks import TaskManager, get_task_dict

from lm_eval_semcal.harness.evaluate import run_lm_eval as semcal_run
from lm_eval_semcal.harness.exemplars import chat_instruction
from lm_eval_semcal.runs.saved import logged_record
from lm_eval_semcal.tasks import TASKS_DIR

# lm-eval itself runs here: CI runs this module under every supported release.
pytestmark = pytest.mark.harness

DATA_FILES = {"gsm8k": str(GSM8K_TEST), "triviaqa": str(FIXTURES / "triviaqa.jsonl")}
CONCISE_NUMBER = "Answer each question with the final number alone, on one line, with no working, units or other words."


def load(task_name: str):
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_files": DATA_FILES})
    task = get_task_dict([task_name], manager)[task_name]
    return task, task.eval_docs[0]


def render(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """A chat template: each turn as <|role|>content."""
    return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + ("<|assistant|>" if add_generation_prompt else "")


def render_without_system(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """What lm-eval's `hf` backend renders for a template that refuses a system turn: the turn dropped."""
    return render([m for m in messages if m["role"] != "system"], add_generation_prompt)


@pytest.mark.parametrize("task_name", ["semcal_gsm8k", "semcal_triviaqa_sentence", "semcal_triviaqa_cot"])
def test_a_base_prompt_is_lm_evals_own_byte_for_byte(task_name):
    task, doc = load(task_name)
    ours = task.fewshot_context(doc, 5)
    assert ours == ConfigurableTask.fewshot_context(task, doc, 5)
    assert ours.startswith("Q: ") and ours.endswith("\nA:")
    assert "Answer each question" not in ours and "Reason step by step" not in ours


def test_the_chat_conversation_opens_with_the_instruction_in_a_system_turn():
    task, doc = load("semcal_gsm8k")
    text = task.fewshot_context(doc, 5, apply_chat_template=True, fewshot_as_multiturn=True, chat_template=render)
    assert text.startswith(f"<|system|>{CONCISE_NUMBER}\n<|user|>Q: A baker makes 24 muffins")
    assert text.count("<|user|>") == 6 and text.count("<|assistant|>") == 6
    assert "<|assistant|>18\n" in text  # the first exemplar's answer, in the task's (concise) form
    assert text.endswith(f"<|user|>Q: {doc['semcal_question']}\nA:\n<|assistant|>")
    # Without multiturn the exemplars collapse into one user turn, after the same system turn.
    single = task.fewshot_context(doc, 5, apply_chat_template=True, fewshot_as_multiturn=False, chat_template=render)
    assert single.startswith(f"<|system|>{CONCISE_NUMBER}\n<|user|>Q: A baker")
    assert single.count("<|user|>") == 1
    # A user's own --system_instruction follows ours.
    both = task.fewshot_context(doc, 5, system_instruction="Be brief.", apply_chat_template=True, chat_template=render)
    assert both.startswith(f"<|system|>{CONCISE_NUMBER}\n\nBe brief.\n<|user|>")


def test_a_template_without_a_system_turn_gets_the_instruction_at_the_head_of_the_first_user_turn():
    task, doc = load("semcal_gsm8k")
    for multiturn in (True, False):
        text = task.fewshot_context(
            doc, 5, apply_chat_template=True, fewshot_as_multiturn=multiturn, chat_template=render_without_system
        )
        assert text.startswith(f"<|user|>{CONCISE_NUMBER}\n\nQ: A baker makes 24 muffins"), text[:200]
        assert text.count(CONCISE_NUMBER) == 1


def test_each_style_and_answer_type_states_its_form():
    expected = {
        "semcal_triviaqa": "Answer each question with the answer alone: a name, a date, a number or a short phrase, "
        "on one line, with no explanation and no other words.",
        "semcal_triviaqa_sentence": "Answer each question in one complete sentence that states the answer, on one "
        "line, with no explanation before or after it.",
        "semcal_triviaqa_cot": 'Reason step by step, then end your answer with "The answer is X." where X is the '
        "answer alone.",
        "semcal_gsm8k": CONCISE_NUMBER,
        "semcal_gsm8k_cot": 'Reason step by step, then end your answer with "The answer is X." where X is the '
        "final number alone.",
    }
    for task_name, instruction in expected.items():
        task, doc = load(task_name)
        assert task.chat_instruction() == instruction
        text = task.fewshot_context(doc, 5, apply_chat_template=True, chat_template=render)
        assert text.startswith(f"<|system|>{instruction}\n"), task_name
    assert chat_instruction("sentence", "number").startswith("Answer each question in one complete sentence")


# ------------------------------------------------------- the real lm_eval console script


def chat_model(tmp_path: Path, template: str) -> Path:
    folder = tmp_path / "chat_model"
    subprocess.run([sys.executable, "-m", "lm_eval_semcal.cli", "tiny-model", str(folder)], check=True,
                   capture_output=True, timeout=300)
    (folder / "chat_template.jinja").write_text(template)
    return folder


SYSTEM_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def run_lm_eval(model: Path, out: Path, *flags: str, console: bool = False) -> list[dict]:
    """Two GSM8K questions, M = 3: through the `lm_eval` console script, or (faster, the
    same lm-eval CLI) `semcal run` in this process."""
    rows = out.parent / "gsm8k.jsonl"
    rows.write_text("".join(GSM8K_TEST.read_text().splitlines(keepends=True)[:2]))
    args = [
        "--model", "hf-semcal", "--model_args", f"pretrained={model},dtype=float32", "--device", "cpu",
        "--tasks", "semcal_gsm8k", "--metadata", json.dumps({"data_files": str(rows), "repeats": 3}), "--limit", "2",
        "--output_path", str(out), "--log_samples", *flags,
    ]  # fmt: skip
    if console:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "lm_eval"), *args], capture_output=True, text=True, timeout=600, cwd=out.parent
        )
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        semcal_run(["run", *args], repeats=None)
    [samples] = out.rglob("samples_semcal_gsm8k_*.jsonl")
    return [json.loads(line) for line in samples.open()]


@pytest.mark.slow  # the real lm_eval console script on a tiny chat model, then three runs in process
def test_lm_eval_renders_the_instruction_for_a_tiny_chat_model(tmp_path, in_process_run):
    model = chat_model(tmp_path, SYSTEM_TEMPLATE)
    for flags in (("--apply_chat_template", "--fewshot_as_multiturn"), ("--apply_chat_template",)):
        samples = run_lm_eval(model, tmp_path / f"out{len(flags)}", *flags, console=len(flags) == 2)
        assert len(samples) == 2
        for sample in samples:
            prompt = sample["arguments"]["gen_args_0"]["arg_0"]
            assert prompt.startswith(f"<|system|>{CONCISE_NUMBER}<|end|>\n<|user|>Q: A baker makes 24 muffins")
            assert prompt.endswith(f"Q: {sample['doc']['question']}\nA:<|end|>\n<|assistant|>")
            record = logged_record(sample)
            assert record.n_samples == 3 and record.grouping == "numeric"
    base = run_lm_eval(model, tmp_path / "base")
    assert base[0]["arguments"]["gen_args_0"]["arg_0"].startswith("Q: A baker makes 24 muffins")
    assert "<|" not in base[0]["arguments"]["gen_args_0"]["arg_0"]

    no_system = chat_model(tmp_path / "no_system", NO_SYSTEM_TEMPLATE)
    [first, _] = run_lm_eval(no_system, tmp_path / "no_system" / "out", "--apply_chat_template")
    assert first["arguments"]["gen_args_0"]["arg_0"].startswith(f"<|user|>{CONCISE_NUMBER}\n\nQ: A baker makes 24")
