"""How fast the scorer groups responses under the string B (`normalize`, `numeric`).

    python scripts/bench_strings.py                 # about 10 seconds on 2 CPU cores
    python scripts/bench_strings.py --questions 18000

Scores `--questions` synthetic questions of M = 50 sampled responses each through
`score_questions` (extraction, grouping, judging every class): the work the
`semcal_grouping` filter does per task. Text answers mix ASCII and non-ASCII surface forms
(hyphens, apostrophes, accents, a zero-width space); number answers mix formats of a few
values. Prints responses per second for each B, and the time a TriviaQA-sized run
(17,944 questions) would take.
"""

from __future__ import annotations

import argparse
import random
import time

from lm_eval_semcal import Question, get_grouping, score_questions

TEXT_FORMS = [
    "Paris", "paris.", "The Eiffel Tower", "Rolls-Royce", "Rolls Royce", "Shaquille O'Neal",
    "Shaquille O\u2019Neal", "J. R. R. Tolkien", "Zürich", "Pa\u200bris", "1,000", "the Beatles",
]
NUMBER_FORMS = ["18", "$18.00", "18 dollars", "The answer is 18.", "1,234", "3/4", "\\boxed{42}", "-5"]
TRIVIAQA_QUESTIONS = 17_944


def responses_per_second(grouping: str, forms: list[str], answer_type: str, n_questions: int, m: int) -> float:
    rng = random.Random(0)
    questions = [Question("q", [rng.choice(forms) for _ in range(m)], [forms[0]]) for _ in range(n_questions)]
    grouping = get_grouping(grouping)
    start = time.perf_counter()
    score_questions(questions, grouping, answer_type=answer_type)
    return n_questions * m / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=50, help="M, responses per question")
    args = parser.parse_args()
    for grouping, forms, answer_type in (("normalize", TEXT_FORMS, "text"), ("numeric", NUMBER_FORMS, "number")):
        rate = responses_per_second(grouping, forms, answer_type, args.questions, args.samples)
        print(
            f"{grouping:>9}: {rate:,.0f} responses/s; TriviaQA's {TRIVIAQA_QUESTIONS:,} questions at "
            f"M = {args.samples}: {TRIVIAQA_QUESTIONS * args.samples / rate:.1f} s"
        )


if __name__ == "__main__":
    main()
