"""The fixed 5-shot exemplars of every semcal task, one answer per response style.

Written for this project (none is drawn from a dataset split), so a hub run and a
local-file run see the same prompt, and no exemplar can leak an evaluation question.
Each exemplar has the question (`semcal_question`, the field the task prompt reads) and
its answer in the three styles; a task YAML picks one with
`fewshot_config: {doc_to_target: "{{concise}}"}` (or sentence, cot).
"""

from __future__ import annotations

_OPEN_QA = [
    {
        "semcal_question": "Which planet is known as the Red Planet?",
        "concise": "Mars",
        "sentence": "The planet known as the Red Planet is Mars.",
        "cot": "The Red Planet is named for the reddish iron oxide dust on its surface, "
        "which belongs to the fourth planet from the Sun. The answer is Mars.",
    },
    {
        "semcal_question": "Who wrote the novel Pride and Prejudice?",
        "concise": "Jane Austen",
        "sentence": "Pride and Prejudice was written by Jane Austen.",
        "cot": "Pride and Prejudice is an English novel published in 1813 by the author "
        "of Sense and Sensibility and Emma. The answer is Jane Austen.",
    },
    {
        "semcal_question": "What is the chemical symbol for gold?",
        "concise": "Au",
        "sentence": "The chemical symbol for gold is Au.",
        "cot": "Gold's symbol comes from its Latin name, aurum. The answer is Au.",
    },
    {
        "semcal_question": "In which country is the city of Kyoto?",
        "concise": "Japan",
        "sentence": "The city of Kyoto is in Japan.",
        "cot": "Kyoto was the imperial capital on the island of Honshu for over a "
        "thousand years before Tokyo. The answer is Japan.",
    },
    {
        "semcal_question": "How many sides does a hexagon have?",
        "concise": "6",
        "sentence": "A hexagon has six sides.",
        "cot": "The prefix hexa- means six, and a polygon is named for its number of "
        "sides. The answer is 6.",
    },
]

_MATH = [
    {
        "semcal_question": "A baker makes 24 muffins and sells them in boxes of 4. "
        "Each box costs $3. How much money does the baker make if all boxes are sold?",
        "concise": "18",
        "sentence": "The baker makes 18 dollars.",
        "cot": "The baker fills 24 / 4 = 6 boxes. Six boxes at $3 each make 6 * 3 = 18 "
        "dollars. The answer is 18.",
    },
    {
        "semcal_question": "Tom has 3 times as many marbles as Ann. Ann has 7 marbles. "
        "How many marbles do they have together?",
        "concise": "28",
        "sentence": "Together they have 28 marbles.",
        "cot": "Tom has 3 * 7 = 21 marbles. Together they have 21 + 7 = 28 marbles. "
        "The answer is 28.",
    },
    {
        "semcal_question": "A train travels 60 miles per hour for 2.5 hours. How many "
        "miles does it travel?",
        "concise": "150",
        "sentence": "The train travels 150 miles.",
        "cot": "Distance is speed times time: 60 * 2.5 = 150 miles. The answer is 150.",
    },
    {
        "semcal_question": "Lena buys 5 notebooks at $2 each and a pen for $4. She pays "
        "with a $20 bill. How much change does she get?",
        "concise": "6",
        "sentence": "Lena gets 6 dollars in change.",
        "cot": "The notebooks cost 5 * 2 = 10 dollars, so she spends 10 + 4 = 14 dollars. "
        "Her change is 20 - 14 = 6 dollars. The answer is 6.",
    },
    {
        "semcal_question": "A garden has 12 rows of 15 tulips. A third of the tulips are "
        "red. How many tulips are not red?",
        "concise": "120",
        "sentence": "There are 120 tulips that are not red.",
        "cot": "There are 12 * 15 = 180 tulips. A third of them, 180 / 3 = 60, are red, "
        "so 180 - 60 = 120 are not red. The answer is 120.",
    },
]


def open_qa() -> list[dict]:
    """Exemplars for the open-domain QA tasks (TriviaQA, NQ-Open, SimpleQA)."""
    return [dict(exemplar) for exemplar in _OPEN_QA]


def math() -> list[dict]:
    """Exemplars for the grade-school math task (GSM8K)."""
    return [dict(exemplar) for exemplar in _MATH]


# What an instruct model is told under --apply_chat_template, before the first question:
# a base model learns the answer's form from the exemplars, an instruct model is free to
# answer in its own (sentences, markdown, an explanation), and extraction would then
# measure its formatting. Each states the form the task's exemplars show.
_CHAT_INSTRUCTIONS = {
    ("concise", "text"): "Answer each question with the answer alone: a name, a date, a number or a "
    "short phrase, on one line, with no explanation and no other words.",
    ("concise", "number"): "Answer each question with the final number alone, on one line, with no "
    "working, units or other words.",
    ("sentence", "text"): "Answer each question in one complete sentence that states the answer, on "
    "one line, with no explanation before or after it.",
    ("sentence", "number"): "Answer each question in one complete sentence that states the final "
    "number, on one line, with no working before or after it.",
    ("cot", "text"): 'Reason step by step, then end your answer with "The answer is X." where X is '
    "the answer alone.",
    ("cot", "number"): 'Reason step by step, then end your answer with "The answer is X." where X is '
    "the final number alone.",
}


def chat_instruction(style: str, answer_type: str) -> str:
    """The instruction that tells a chat model the answer's form for a style and answer type."""
    return _CHAT_INSTRUCTIONS[(style, answer_type)]
