"""A synthetic world whose every answer distribution is known: the ground truth of `semcal demo`.

Made-up people and made-up towns. Each question ("Where was Velorin Quast born?") has a
true distribution over one to four towns, with weights in twentieths, so that the true
top-class probability ranges from about 0.3 to 1. Each town has three surface forms ("Marrow",
"the town of Marrow", "Marrow, in the north"): string classes split one town over three
strings, the entity classes of the demo's B (`demo.entity`) do not.

- `build_world(seed, n_questions)` is deterministic: the same seed gives the same world.
- `training_lines(world)` states every question's answer `LINES_PER_QUESTION` times, each
  town as often as its weight says (exactly: 7/20 is 7 of 20 lines), its surface forms
  taken in turn.
- `evaluation_rows(world)` holds one TriviaQA-schema row per question, whose gold town is
  drawn from the true distribution and whose aliases are all of that town's forms.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lm_eval_semcal.core.normalization import normalize_text

LINES_PER_QUESTION = 20
N_TOWNS = 40
REGIONS = ("north", "south", "east", "west")
TEMPLATES = (
    "Where was {} born?",
    "In which town does {} live?",
    "Where did {} grow up?",
    "In which town did {} study?",
)
# How many towns a question's answer is spread over, and how often.
SPREAD_WEIGHTS = {1: 0.25, 2: 0.3, 3: 0.25, 4: 0.2}
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gl", "kr", "st", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ou", "ei")
_CODAS = ("", "", "n", "r", "l", "s", "th", "rn", "st", "x")


@dataclass(frozen=True)
class Town:
    name: str
    region: str

    @property
    def forms(self) -> tuple[str, str, str]:
        """The three ways the corpus writes this town."""
        return (self.name, f"the town of {self.name}", f"{self.name}, in the {self.region}")


@dataclass(frozen=True)
class Question:
    """One question, its true answer distribution (town index -> twentieths) and its gold draw."""

    id: str
    text: str
    counts: tuple[tuple[int, int], ...]  # (town index, count out of LINES_PER_QUESTION), largest first
    gold: int  # town index drawn from the true distribution

    @property
    def true_top_probability(self) -> float:
        return self.counts[0][1] / LINES_PER_QUESTION


@dataclass(frozen=True)
class World:
    seed: int
    towns: tuple[Town, ...]
    questions: tuple[Question, ...]


def _word(rng: random.Random, syllables: int) -> str:
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
    return word.capitalize()


def _distinct_words(rng: random.Random, count: int, syllables: Sequence[int]) -> list[str]:
    words: dict[str, None] = {}
    while len(words) < count:
        words.setdefault(_word(rng, rng.choice(syllables)))
    return list(words)


def _counts(rng: random.Random, spread: int) -> list[int]:
    """`spread` positive counts summing to LINES_PER_QUESTION, largest first, varied."""
    while True:
        cuts = sorted(rng.sample(range(1, LINES_PER_QUESTION), spread - 1))
        counts = sorted((b - a for a, b in zip([0, *cuts], [*cuts, LINES_PER_QUESTION])), reverse=True)
        if spread == 1 or counts[0] > counts[1] or rng.random() < 0.3:
            return counts


@lru_cache(maxsize=1)
def towns() -> tuple[Town, ...]:
    """The towns, the same in every world: a world's seed draws its people and answers, so
    the demo's entity B knows every town's forms whatever the seed."""
    rng = random.Random("towns")
    return tuple(Town(name, rng.choice(REGIONS)) for name in _distinct_words(rng, N_TOWNS, (2,)))


def build_world(seed: int = 0, n_questions: int = 300) -> World:
    """The deterministic world of `seed` with `n_questions` questions (one per person)."""
    if not isinstance(n_questions, int) or n_questions < 1:
        raise ValueError(f"n_questions={n_questions!r} must be a whole number >= 1")
    rng = random.Random(f"people-{seed}")
    town_list = towns()
    firsts = _distinct_words(rng, n_questions, (2, 3))
    lasts = _distinct_words(rng, n_questions, (1, 2))
    rng.shuffle(lasts)
    questions = []
    for i in range(n_questions):
        spread = rng.choices(list(SPREAD_WEIGHTS), weights=list(SPREAD_WEIGHTS.values()))[0]
        chosen = rng.sample(range(len(town_list)), spread)
        counts = tuple(zip(chosen, _counts(rng, spread), strict=True))
        gold = rng.choices([t for t, _ in counts], weights=[c for _, c in counts])[0]
        text = TEMPLATES[i % len(TEMPLATES)].format(f"{firsts[i]} {lasts[i]}")
        questions.append(Question(f"syn_{seed}_{i}", text, counts, gold))
    return World(seed, town_list, tuple(questions))


def prompt(question: str) -> str:
    """The text the model reads, as the `semcal_synthetic` task writes it."""
    return f"Q: {question}\nA:"


def training_lines(world: World) -> list[tuple[str, str]]:
    """(prompt, answer) pairs: each question's towns exactly as often as their weights, forms in turn."""
    lines = []
    for question in world.questions:
        turn = 0
        for town, count in question.counts:
            for _ in range(count):
                lines.append((prompt(question.text), " " + world.towns[town].forms[turn % 3]))
                turn += 1
    return lines


def evaluation_rows(world: World) -> list[dict]:
    """One row per question in the TriviaQA schema; the aliases are the gold town's forms."""
    return [
        {
            "question": q.text,
            "question_id": q.id,
            "answer": {
                "value": world.towns[q.gold].name,
                "aliases": list(world.towns[q.gold].forms),
                "normalized_aliases": [normalize_text(form) for form in world.towns[q.gold].forms],
            },
        }
        for q in world.questions
    ]


def write_evaluation_file(world: World, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in evaluation_rows(world)), encoding="utf-8")
    return path


def load_synthetic(data_files: str | Path | None = None, world_seed: int = 0, n_questions: int = 300, **_run_metadata):
    """lm-eval's `custom_dataset` for `semcal_synthetic`: a written file, or the world built in memory."""
    import datasets

    from lm_eval_semcal.harness.data import add_semcal_fields, load_semcal_dataset

    if data_files is not None:
        return load_semcal_dataset("triviaqa", data_files=data_files)
    rows = datasets.Dataset.from_list(evaluation_rows(build_world(int(world_seed), int(n_questions))))
    return datasets.DatasetDict({"validation": add_semcal_fields("triviaqa", rows)})
