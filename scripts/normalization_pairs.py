"""How often answer normalisers keep two forms of one answer together, and merge two answers.

    python scripts/normalization_pairs.py                      # well under 10 seconds
    python scripts/normalization_pairs.py --before /tmp/before.py --examples

The corpus is built, deterministically, from a hand-written list of about 500 real
trivia-style answers in this file (people with initials, hyphenated and apostrophised
names, diacritics, slashes, dotted abbreviations, titles with articles, numbers); it is
not sampled from TriviaQA. It holds two sets of pairs:

- variant pairs: two surface forms of the same answer, labelled by kind (hyphenation,
  spacing, dotted initials, apostrophes, diacritics and compatibility forms, invisible
  characters, case and articles, thousands separators). Three more kinds are reported for
  information only: accent-stripped forms ("Beyoncé" / "Beyonce"), initials run together
  ("J. R. R. Tolkien" / "JRR Tolkien") and digit groups split by spaces ("1,000,000" /
  "1 000 000"). `normalize` keeps all three apart; of the official scorers, both keep
  accents apart, SQuAD's joins "J.R.R." to "JRR" (it deletes the dots) and TriviaQA's
  joins "1,000" to "1 000" (it reads the comma as a space).
- different-answer pairs: two answers that must land in different classes (years 1944 /
  1945, decimals 1.5 / 15, neighbouring numbers 1,000 / 1,001, answers a word, an initial,
  a letter or a hyphenated part apart: John Adams / John Quincy Adams, George H. W. Bush /
  George W. Bush, Austria / Australia, Jean-Paul / Jean-Pierre).

Each normaliser maps both strings of a pair to a key. A variant pair is kept together
when both keys are equal and not empty (an empty key is no answer); a different-answer
pair is wrongly merged when both keys are equal. The normalisers measured: the official
SQuAD v1.1 and TriviaQA scorers' `normalize_answer` (copied below), semcal's
`lm_eval_semcal.core.normalization.normalize_text`, and with `--before PATH` the
`normalize_text` of another file (e.g. an older version, from `git show
f22c6a2:lm_eval_semcal/core/normalization.py > /tmp/before.py`). The script prints
markdown tables, and the count of variant pairs that TriviaQA's scorer keeps together but
a semcal normaliser splits (`--examples`: the first ten of them).

Tests import `variant_pairs`, `different_pairs`, `squad_normalize`, `triviaqa_normalize`
and `measure` from here.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import re
import string
import unicodedata
from collections.abc import Callable
from pathlib import Path

from lm_eval_semcal.core.normalization import normalize_text

# ------------------------------------------------------------------ the answers

INITIALS = (
    "J. R. R. Tolkien", "J. K. Rowling", "C. S. Lewis", "T. S. Eliot", "H. G. Wells",
    "W. B. Yeats", "E. E. Cummings", "P. G. Wodehouse", "J. D. Salinger",
    "F. Scott Fitzgerald", "George W. Bush", "George H. W. Bush", "John F. Kennedy",
    "Franklin D. Roosevelt", "Ulysses S. Grant", "Harry S. Truman", "Dwight D. Eisenhower",
    "Lyndon B. Johnson", "A. A. Milne", "E. M. Forster", "D. H. Lawrence", "H. P. Lovecraft",
    "L. Frank Baum", "J. M. Barrie", "G. K. Chesterton", "W. H. Auden", "B. B. King",
    "J. J. Thomson", "J. Robert Oppenheimer", "O. J. Simpson", "P. T. Barnum", "J. P. Morgan",
    "W. E. B. Du Bois", "Samuel L. Jackson", "Michael J. Fox", "Cecil B. DeMille",
    "Jerome K. Jerome", "E. B. White", "T. E. Lawrence", "W. G. Grace", "J. Edgar Hoover",
    "John D. Rockefeller", "Philip K. Dick", "Ursula K. Le Guin", "Booker T. Washington",
    "R.E.M.", "U.S.S.R.", "L.A. Confidential", "Washington, D.C.", "E.T. the Extra-Terrestrial",
    "P.S. I Love You",
)

DOTTED = (
    "Mr. T", "St. Louis", "Dr. Dre", "Dr. Seuss", "Dr. No", "Mrs. Doubtfire", "Mr. Bean",
    "St. Petersburg", "St. Helena", "St. Lucia", "St. Kitts and Nevis", "St. Andrews",
    "Mt. Everest", "Martin Luther King Jr.", "Sammy Davis Jr.", "Robert Downey Jr.",
    "Cal Ripken Jr.", "Dr. Strangelove", "Mr. Smith Goes to Washington", "Mrs. Dalloway",
    "Dr. Jekyll and Mr. Hyde", "Sgt. Pepper's Lonely Hearts Club Band", "St. Elsewhere",
    "Yahoo!", "Jeopardy!", "Oklahoma!", "Wham!", "Panic! at the Disco", "Westward Ho!",
    "Mamma Mia!", "Who's Afraid of Virginia Woolf?", "Star Wars: A New Hope",
    "Mission: Impossible",
)

HYPHENATED = (
    "Rolls-Royce", "Jean-Paul Sartre", "Coca-Cola", "T-Rex", "Jean-Luc Godard",
    "Jean-Jacques Rousseau", "Jean-Claude Van Damme", "Jean-Michel Basquiat",
    "Jean-Paul Gaultier", "Mercedes-Benz", "Hewlett-Packard", "Harley-Davidson",
    "Stoke-on-Trent", "Stratford-upon-Avon", "Newcastle-upon-Tyne", "Guinea-Bissau",
    "Schleswig-Holstein", "Alsace-Lorraine", "Austria-Hungary", "Spider-Man", "X-Men",
    "Wi-Fi", "Jay-Z", "Ne-Yo", "Run-DMC", "Blink-182", "Olivia Newton-John",
    "Catherine Zeta-Jones", "Daniel Day-Lewis", "Joseph Gordon-Levitt", "Kim Jong-un",
    "Ban Ki-moon", "Pierre-Auguste Renoir", "Henri Cartier-Bresson",
    "Henri de Toulouse-Lautrec", "Nikolai Rimsky-Korsakov", "Winston-Salem", "Wilkes-Barre",
    "Port-au-Prince", "Aix-en-Provence", "Tic-tac-toe", "Hide-and-seek", "Tug-of-war",
    "Jack-in-the-box", "Ping-pong", "Hip-hop", "Yo-yo", "Mother-in-law", "Forget-me-not",
    "Twenty-one", "Forty-two", "Ninety-nine", "A-ha", "Anglo-Saxon", "Franco-Prussian War",
    "Russo-Japanese War", "Sino-Japanese War", "Mid-Atlantic Ridge", "Post-it",
    "Band-Aid", "Jell-O", "7-Eleven", "Chick-fil-A", "Ben-Hur", "Rikki-Tikki-Tavi",
    "Catch-22", "F-16", "B-52", "Hale-Bopp", "Bose-Einstein condensate",
    "Hertzsprung-Russell diagram", "Creutzfeldt-Jakob disease", "Epstein-Barr virus",
    "Mason-Dixon line", "Winnie-the-Pooh", "Will-o'-the-wisp", "The A-Team",
)

SLASHES_AND_AMPERSANDS = (
    "AC/DC", "TCP/IP", "OS/2", "24/7", "9/11", "AT&T", "H&M", "R&B", "M&M's",
    "Simon & Garfunkel", "Earth, Wind & Fire", "Procter & Gamble", "Marks & Spencer",
    "Ben & Jerry's", "P&O",
)

APOSTROPHES = (
    "Shaquille O'Neal", "Guns N' Roses", "Rock 'n' roll", "Ireland's Call", "Ireland's Eye",
    "Georgia O'Keeffe", "Peter O'Toole", "Conan O'Brien", "Flann O'Brien", "Eugene O'Neill",
    "Scarlett O'Hara", "Dolores O'Riordan", "Sean O'Casey", "Daniel O'Connell",
    "D'Artagnan", "Hawai'i", "Macy's", "McDonald's", "Sainsbury's", "Lloyd's of London",
    "Sotheby's", "Christie's", "Kellogg's", "Dunkin' Donuts", "Schindler's List",
    "Gulliver's Travels", "Charlotte's Web", "Ender's Game", "Sophie's Choice",
    "The Pilgrim's Progress", "The Handmaid's Tale",
    "The Hitchhiker's Guide to the Galaxy", "Angela's Ashes", "Breakfast at Tiffany's",
    "Ocean's Eleven", "Foucault's Pendulum", "Zeno's paradoxes", "Ohm's law", "Hooke's law",
    "Boyle's law", "Newton's cradle", "Murphy's law", "Occam's razor", "Halley's Comet",
    "Alzheimer's disease", "Parkinson's disease", "Achilles' heel", "St. John's Wood",
    "St. Peter's Basilica", "St. Paul's Cathedral", "Martha's Vineyard", "Hell's Kitchen",
    "Fermat's Last Theorem", "Pascal's triangle", "Avogadro's number", "Planck's constant",
    "Rubik's Cube", "Don't Stop Believin'", "Rockin' Robin", "Sweet Child o' Mine",
    "'Allo 'Allo!", "'Round Midnight", "Ain't No Mountain High Enough",
    "It's a Wonderful Life", "I'm a Believer", "Don't Look Back in Anger",
    "Won't Get Fooled Again", "You've Got Mail", "A Midsummer Night's Dream",
)

DIACRITICS = (
    "Beyoncé", "Zürich", "São Paulo", "Ångström", "Antonín Dvořák", "Björk",
    "Mötley Crüe", "Motörhead", "Blue Öyster Cult", "Édith Piaf", "Émile Zola",
    "Gabriel García Márquez", "Pelé", "Eusébio", "El Niño", "La Niña", "Curaçao", "Réunion",
    "Crème brûlée", "Déjà vu", "Façade", "Piñata", "Jalapeño", "Kurt Gödel",
    "Erwin Schrödinger", "Paul Erdős", "Łódź", "Kraków", "Wrocław", "Gdańsk", "Málaga",
    "Córdoba", "Bogotá", "Medellín", "Montréal", "Québec", "Malmö", "Tromsø", "Reykjavík",
    "Škoda", "Citroën", "Nestlé", "Häagen-Dazs", "Hüsker Dü", "Sigur Rós", "Chloë Sevigny",
    "Renée Zellweger", "Penélope Cruz", "Plácido Domingo", "Andrés Iniesta",
    "Zlatan Ibrahimović", "Novak Đoković", "Mesut Özil", "Jürgen Klopp", "Kimi Räikkönen",
    "Nürburgring", "Düsseldorf", "Köln", "Genève", "Besançon", "Orléans", "Nîmes",
    "Champs-Élysées", "Saint-Saëns", "Baden-Württemberg", "Guillain-Barré syndrome",
    "Smörgåsbord", "Möbius strip", "Poincaré conjecture", "Fabergé egg", "Emily Brontë",
    "Noël Coward", "Antoine de Saint-Exupéry", "Les Misérables", "Amélie", "España",
    "Sinéad O'Connor", "L'Oréal", "Côte d'Ivoire", "Val d'Isère", "Ménière's disease",
    "Sinn Féin", "Bjørn Borg", "Pokémon", "Café-au-lait spot", "Île-de-France", "Côte-d'Or",
    "Marie-Thérèse",
)

TITLES_WITH_ARTICLES = (
    "The Beatles", "The The", "The Who", "The Rolling Stones", "The Doors", "The Kinks",
    "The Clash", "The Smiths", "The Police", "The Hague", "The Great Gatsby",
    "The Godfather", "The Catcher in the Rye", "The Lord of the Rings", "The Hobbit",
    "The Simpsons", "The Wizard of Oz", "The Netherlands", "The Bahamas", "The Gambia",
    "The Da Vinci Code", "A Tale of Two Cities", "A Clockwork Orange",
    "An American in Paris", "The Sound of Music", "The Merchant of Venice",
    "The Old Man and the Sea", "The Jungle Book", "The Time Machine",
    "The War of the Worlds", "A Christmas Carol", "An Inspector Calls", "A Room with a View",
)

NAMES_AND_PLACES = (
    "Leonardo da Vinci", "Vincent van Gogh", "Ludwig van Beethoven",
    "Wolfgang Amadeus Mozart", "Johann Sebastian Bach", "Pablo Picasso", "Albert Einstein",
    "Isaac Newton", "Marie Curie", "Charles Darwin", "Neil Armstrong", "Abraham Lincoln",
    "George Washington", "John Adams", "John Quincy Adams", "Thomas Jefferson",
    "Theodore Roosevelt", "Winston Churchill", "Margaret Thatcher", "Queen Elizabeth II",
    "Henry VIII", "World War II", "Pope John Paul II", "Malcolm X", "William Shakespeare",
    "Charles Dickens", "Jane Austen", "Mark Twain", "Ernest Hemingway", "Leo Tolstoy",
    "Fyodor Dostoevsky", "Nelson Mandela", "Mahatma Gandhi", "Mother Teresa",
    "Napoleon Bonaparte", "Julius Caesar", "Alexander the Great", "Catherine the Great",
    "Ivan the Terrible", "Attila the Hun", "Jack the Ripper", "Mount Kilimanjaro",
    "Pacific Ocean", "Amazon River", "Great Barrier Reef", "Grand Canyon", "Niagara Falls",
    "Lake Titicaca", "Buenos Aires", "Rio de Janeiro", "New York City", "Los Angeles",
    "San Francisco", "Hong Kong", "Kuala Lumpur", "Addis Ababa", "Sherlock Holmes",
    "Griffith Observatory", "Clifford Chance", "Fiji", "Austria", "Australia",
)

THOUSANDS = (
    "1,000", "10,000", "100,000", "1,000,000", "1,024", "65,536", "8,848", "29,032",
    "186,000", "299,792,458", "6,371", "384,400", "93,000,000", "1,600", "2,000,000",
    "7,000,000,000", "12,742", "40,075", "1,000,000,000", "3,000",
)

YEARS = (
    1066, 1215, 1492, 1588, 1605, 1666, 1688, 1707, 1776, 1789, 1805, 1815, 1848, 1861,
    1865, 1871, 1914, 1918, 1929, 1939, 1944, 1945, 1953, 1963, 1966, 1969, 1989, 1991, 2001,
)

DECIMALS = (
    "1.5", "3.14", "2.718", "9.81", "98.6", "1.618", "0.5", "2.5", "6.67", "1.41", "37.5",
    "4.5", "7.5", "12.5", "0.75",
)

ANSWERS = (
    INITIALS + DOTTED + HYPHENATED + SLASHES_AND_AMPERSANDS + APOSTROPHES + DIACRITICS
    + TITLES_WITH_ARTICLES + NAMES_AND_PLACES + THOUSANDS + tuple(map(str, YEARS)) + DECIMALS
)

# ------------------------------------------------------------- variant pairs

# Kinds whose pairs are one answer written two ways: every normaliser that follows the
# rules of docs/grouping.md keeps them together.
TOGETHER_KINDS = (
    "hyphenation",
    "spacing",
    "dotted initials",
    "apostrophes",
    "diacritics",
    "invisible",
    "case and articles",
    "thousands separators",
)
# Reported for information; `normalize` keeps all three apart. "Beyonce" is another
# string to both official scorers. "J.R.R." is "j r r" to TriviaQA's scorer and `normalize`
# (punctuation between letters reads as a space), "jrr" to SQuAD's, which deletes it.
# TriviaQA's scorer joins "1,000" to "1 000", as it reads every comma as a space, while
# `normalize` deletes a thousands comma (as SQuAD) and a space between digits still
# separates them ("3 4" is not "34").
INFORMATIONAL_KINDS = ("accents stripped", "initials run together", "digits grouped by spaces")

# Characters a hyphen between two words is written as: TriviaQA's scorer and `normalize`
# read the ASCII hyphen as a space; the others are what word processors and typesetters
# put there.
HYPHEN_STAND_INS = (" ", " - ", "\u2013", "\u2010", "\u2011")
SLASH_STAND_INS = (" ", "-", " / ")
APOSTROPHE_LIKES = "\u2019\u2018\u00b4\u0060\u02bc\u2032\uff07\uff40"
SPACE_STAND_INS = ("  ", "\u00a0", "\u202f", "\t", "\u3000")
# ZWSP, soft hyphen and BOM go inside the longest word, ZWSP also right after the first
# punctuation mark (where a normaliser that reads punctuation before it drops format
# characters sees no word character); bidi controls wrap the answer.
MID_WORD_INVISIBLES = ("\u200b", "\u00ad", "\ufeff")
BIDI_WRAPS = (
    ("\u202a", "\u202c"), ("\u202b", "\u202c"), ("\u202d", "\u202c"), ("\u202e", "\u202c"),
    ("\u2066", "\u2069"), ("\u2067", "\u2069"), ("\u2068", "\u2069"),
)
# Longest first, so that "ffi" becomes one ligature, not "ﬀ" and "i".
LIGATURES = (
    ("ffi", "\ufb03"), ("ffl", "\ufb04"), ("ff", "\ufb00"), ("fi", "\ufb01"), ("fl", "\ufb02"),
)
# U+2160-U+216B, one character each; NFKC spells them out in Latin capitals.
ROMAN_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII")
ROMAN_NUMERAL_CHARS = dict(zip(ROMAN_NUMERALS, "ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫ"))
ROMAN_NUMERAL_RE = re.compile(r"(?<!\S)(?:" + "|".join(ROMAN_NUMERALS) + r")(?!\S)")
FULLWIDTH = {code: code + 0xFEE0 for code in range(0x21, 0x7F)} | {0x20: 0x3000}
ARTICLES = frozenset({"a", "an", "the"})

WORD_HYPHEN_RE = re.compile(r"(?<=\w)-(?=\w)")
LETTER_SLASH_RE = re.compile(r"(?<=[^\W\d_])/(?=[^\W\d_])")
SPACE_AFTER_PUNCT_RE = re.compile(r"(?<=[.,:;!?]) (?=\w)")
# A run of dotted single capitals: "J. R. R.", "D.C.", "W."; not the "t." of "St.".
INITIALS_RE = re.compile(r"(?<![\w.])(?:[A-Z]\. ?)*[A-Z]\.(?!\w)")
THOUSANDS_RE = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+")
LEADING_ARTICLE_RE = re.compile(r"(?:a|an|the) (?=\S)", re.IGNORECASE)


def _insert_mid_word(text: str, insert: str) -> str:
    word = max(re.finditer(r"\w+", text), key=lambda m: len(m.group()))
    cut = word.start() + len(word.group()) // 2
    return text[:cut] + insert + text[cut:]


def _hyphenation(answer: str) -> list[tuple[str, str]]:
    pairs = []
    if WORD_HYPHEN_RE.search(answer):
        spelled = [WORD_HYPHEN_RE.sub(stand_in, answer) for stand_in in HYPHEN_STAND_INS]
        pairs += [(answer, form) for form in spelled]
        pairs.append((spelled[0], spelled[2]))  # space against en dash, no hyphen in either
    if LETTER_SLASH_RE.search(answer):
        pairs += [(answer, LETTER_SLASH_RE.sub(stand_in, answer)) for stand_in in SLASH_STAND_INS]
    return pairs


def _spacing(answer: str) -> list[tuple[str, str]]:
    # One stand-in per answer, picked by its length, so that each is used about equally
    # often without multiplying the corpus.
    stand_in = SPACE_STAND_INS[len(answer) % len(SPACE_STAND_INS)]
    return [
        (answer, SPACE_AFTER_PUNCT_RE.sub("", answer)),
        (answer, f" {answer}\n"),
        (answer, answer.replace(" ", stand_in)),
    ]


def _initials_forms(answer: str) -> dict[str, str]:
    """The answer with its initials spaced, compact, undotted and run together."""
    match = INITIALS_RE.search(answer)
    if match is None:
        return {}
    letters = re.findall(r"[A-Z]", match.group())
    renderings = {
        "spaced": ". ".join(letters) + ".",
        "compact": ".".join(letters) + ".",
        "undotted": " ".join(letters),
        "run together": "".join(letters),
    }
    before, after = answer[: match.start()], answer[match.end() :]
    return {name: before + rendering + after for name, rendering in renderings.items()}


def _dotted_initials(answer: str) -> list[tuple[str, str]]:
    forms = _initials_forms(answer)
    written = [forms[name] for name in ("spaced", "compact", "undotted") if name in forms]
    return list(itertools.combinations(dict.fromkeys(written), 2))


def _initials_run_together(answer: str) -> list[tuple[str, str]]:
    forms = _initials_forms(answer)
    if not forms or forms["run together"] == forms["undotted"]:
        return []  # a single initial: "George W Bush" is already the undotted form
    return [(forms["spaced"], forms["run together"]), (forms["compact"], forms["run together"])]


def _apostrophes(answer: str) -> list[tuple[str, str]]:
    if "'" not in answer:
        return []
    pairs = [(answer, answer.replace("'", like)) for like in APOSTROPHE_LIKES]
    # Typeset text opens a quote-like apostrophe at a word start: "Rock ‘n’ roll".
    typographic = re.sub(r"(?<!\w)'", "\u2018", answer).replace("'", "\u2019")
    pairs += [(answer, typographic), (answer, answer.replace("'", ""))]
    return pairs


def _diacritics(answer: str) -> list[tuple[str, str]]:
    pairs = [
        (answer, unicodedata.normalize("NFD", answer)),
        (answer, answer.translate(FULLWIDTH)),
        (answer, ROMAN_NUMERAL_RE.sub(lambda m: ROMAN_NUMERAL_CHARS[m.group()], answer)),
    ]
    ligatured = answer
    for letters, ligature in LIGATURES:
        ligatured = ligatured.replace(letters, ligature)
    pairs.append((answer, ligatured))
    return pairs


def _accents_stripped(answer: str) -> list[tuple[str, str]]:
    decomposed = unicodedata.normalize("NFD", answer)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return [(answer, unicodedata.normalize("NFC", bare))]


def _invisible(answer: str) -> list[tuple[str, str]]:
    pairs = [(answer, _insert_mid_word(answer, invisible)) for invisible in MID_WORD_INVISIBLES]
    pairs.append((answer, "\ufeff" + answer))
    punctuation = re.search(r"[^\w\s]", answer)
    if punctuation:
        pairs.append((answer, answer[: punctuation.end()] + "\u200b" + answer[punctuation.end() :]))
    # One bidi wrap per answer, picked by its length, as the spacing stand-ins are.
    opener, closer = BIDI_WRAPS[len(answer) % len(BIDI_WRAPS)]
    pairs.append((answer, opener + answer + closer))
    return pairs


def _case_and_articles(answer: str) -> list[tuple[str, str]]:
    pairs = [(answer, answer.lower()), (answer, answer.upper())]
    article = LEADING_ARTICLE_RE.match(answer)
    if article:
        rest = answer[article.end() :]
        # "The The" without its first "The" is "The": another answer.
        if any(token.lower() not in ARTICLES for token in rest.split()):
            pairs += [(answer, rest), (answer, rest.lower())]
    elif answer[0].isalpha():
        pairs.append((answer, "the " + answer))
    return pairs


def _thousands_separators(answer: str) -> list[tuple[str, str]]:
    if not THOUSANDS_RE.fullmatch(answer):
        return []
    return [(answer, answer.replace(",", ""))]


def _digits_grouped_by_spaces(answer: str) -> list[tuple[str, str]]:
    if not THOUSANDS_RE.fullmatch(answer):
        return []
    # U+202F and U+2009 are the SI's thousands spaces.
    return [(answer, answer.replace(",", space)) for space in (" ", "\u202f", "\u2009")]


VARIANT_BUILDERS: dict[str, Callable[[str], list[tuple[str, str]]]] = {
    "hyphenation": _hyphenation,
    "spacing": _spacing,
    "dotted initials": _dotted_initials,
    "apostrophes": _apostrophes,
    "diacritics": _diacritics,
    "invisible": _invisible,
    "case and articles": _case_and_articles,
    "thousands separators": _thousands_separators,
    "accents stripped": _accents_stripped,
    "initials run together": _initials_run_together,
    "digits grouped by spaces": _digits_grouped_by_spaces,
}


def variant_pairs() -> list[tuple[str, str, str]]:
    """(kind, a, b): two surface forms of one answer, a != b, no pair twice."""
    pairs = (
        (kind, a, b)
        for kind, build in VARIANT_BUILDERS.items()
        for answer in ANSWERS
        for a, b in build(answer)
        if a != b
    )
    return list(dict.fromkeys(pairs))


# ------------------------------------------------------- different-answer pairs

NAMES_BY_A_WORD = (
    ("John Adams", "John Quincy Adams"), ("Franklin Roosevelt", "Theodore Roosevelt"),
    ("Andrew Johnson", "Lyndon Johnson"), ("William Henry Harrison", "Benjamin Harrison"),
    ("Charles Darwin", "Erasmus Darwin"), ("Johann Strauss", "Richard Strauss"),
    ("Johann Sebastian Bach", "Carl Philipp Emanuel Bach"), ("Henry James", "William James"),
    ("Thomas Mann", "Heinrich Mann"), ("Pliny the Elder", "Pliny the Younger"),
    ("Cato the Elder", "Cato the Younger"), ("North Korea", "South Korea"),
    ("North Dakota", "South Dakota"), ("East Germany", "West Germany"),
    ("Sudan", "South Sudan"), ("Guinea", "Equatorial Guinea"), ("Guinea", "Papua New Guinea"),
    ("Congo", "Democratic Republic of the Congo"), ("Virginia", "West Virginia"),
    ("Mexico", "New Mexico"), ("York", "New York"), ("Hampshire", "New Hampshire"),
    ("Jersey", "New Jersey"), ("Wales", "New South Wales"),
    ("Martin Luther", "Martin Luther King"), ("Martin Luther King Jr.", "Martin Luther King Sr."),
    ("Ken Griffey Jr.", "Ken Griffey Sr."), ("Alexandre Dumas", "Alexandre Dumas fils"),
    ("World War I", "World War II"), ("Henry VII", "Henry VIII"),
    ("Elizabeth I", "Elizabeth II"), ("Star Wars", "Star Trek"),
    ("The Lord of the Rings", "Lord of the Flies"),
    ("George Washington", "George Washington Carver"), ("Washington", "Washington, D.C."),
    ("Kansas", "Kansas City"), ("Robert F. Kennedy", "John F. Kennedy"),
    ("Pieter Bruegel the Elder", "Pieter Bruegel the Younger"), ("Dr. No", "Dr. Who"),
    ("St. Louis", "St. Lucia"),
)

NAMES_BY_AN_INITIAL = (
    ("George H. W. Bush", "George W. Bush"), ("A. A. Milne", "C. R. Milne"),
    ("J. P. Morgan", "J. S. Morgan"), ("W. G. Grace", "E. M. Grace"),
    ("J. J. Thomson", "G. P. Thomson"), ("W. H. Bragg", "W. L. Bragg"),
    ("T. E. Lawrence", "D. H. Lawrence"), ("C. S. Lewis", "C. Day Lewis"),
)

NAMES_BY_A_LETTER = (
    ("Austria", "Australia"), ("Iran", "Iraq"), ("Niger", "Nigeria"), ("Mali", "Malawi"),
    ("Gambia", "Zambia"), ("Slovakia", "Slovenia"), ("Monet", "Manet"), ("Lenin", "Lennon"),
    ("Paraguay", "Uruguay"), ("Guyana", "Guiana"), ("Colombia", "Columbia"),
    ("Keats", "Yeats"), ("Wilde", "Wilder"), ("Austen", "Auster"), ("Turin", "Turing"),
    ("Kant", "Kent"), ("Elgar", "Edgar"), ("Pope", "Poe"), ("Mars", "Marx"),
    ("Malta", "Yalta"), ("Bali", "Mali"), ("Genoa", "Geneva"), ("Sweden", "Swedes"),
)

HYPHENATED_PARTS = (
    ("Jean-Paul", "Jean-Pierre"), ("Jean-Luc", "Jean-Paul"), ("Spider-Man", "Spider-Woman"),
    ("X-Men", "X-Files"), ("Baden-Württemberg", "Baden-Baden"),
    ("Newcastle-upon-Tyne", "Newcastle-under-Lyme"), ("Sino-Japanese War", "Russo-Japanese War"),
    ("Franco-Prussian War", "Austro-Prussian War"), ("Mercedes-Benz", "Mercedes-AMG"),
    ("Coca-Cola", "Pepsi-Cola"), ("Blink-182", "Blink-181"), ("Catch-22", "Catch-23"),
    ("F-16", "F-15"), ("B-52", "B-29"), ("7-Eleven", "7-Up"), ("Twenty-one", "Twenty-two"),
    ("Forty-two", "Forty-three"),
)

NUMBERS_BY_PUNCTUATION = (
    ("3,4", "34"), ("1,2345", "12345"), ("12,34", "1234"), ("1,00", "100"),
    ("1,0000", "10000"), ("9/11", "911"), ("24/7", "247"), ("7/7", "77"), ("1/2", "12"),
    ("3/4", "34"), ("50/50", "5050"),
)

HYPHENATED_TOKEN_RE = re.compile(r"\w+(?:-\w+)+")


def _next_letter(letter: str) -> str:
    base = ord("a") if letter.islower() else ord("A")
    return chr(base + (ord(letter) - base + 1) % 26)


def _one_letter_changed(answer: str) -> str:
    """The middle letter of the longest ASCII word, moved one step along the alphabet."""
    word = max(re.finditer(r"[A-Za-z]+", answer), key=lambda m: len(m.group()))
    cut = word.start() + len(word.group()) // 2
    return answer[:cut] + _next_letter(answer[cut]) + answer[cut + 1 :]


def _one_initial_changed(answer: str) -> str:
    """The last of the answer's dotted initials, moved one step along the alphabet."""
    match = INITIALS_RE.search(answer)
    last = match.start() + match.group().rindex(".") - 1
    return answer[:last] + _next_letter(answer[last]) + answer[last + 1 :]


def _hyphenated_part_dropped(answer: str) -> list[str]:
    """The answer with its first hyphenated word cut to its first part, or its last."""
    match = HYPHENATED_TOKEN_RE.search(answer)
    if match is None:
        return []
    parts = match.group().split("-")
    cuts = []
    # A cut that drops only articles ("A-ha" to "ha") leaves the same key under every
    # article rule: it is not a different answer.
    if any(part.lower() not in ARTICLES for part in parts[1:]):
        cuts.append(parts[0])
    if any(part.lower() not in ARTICLES for part in parts[:-1]):
        cuts.append(parts[-1])
    return [answer[: match.start()] + cut + answer[match.end() :] for cut in cuts]


def _with_thousands(number: int) -> str:
    return f"{number:,}"


def labelled_different_pairs() -> list[tuple[str, str, str]]:
    """(kind, a, b): two different answers; hand-written pairs, then pairs derived from the
    answer lists."""
    pairs = [("years", str(year), str(year + step)) for year in YEARS for step in (1, -1)]
    for decimal in DECIMALS:
        last_digit_up = decimal[:-1] + str((int(decimal[-1]) + 1) % 10)
        pairs += [("decimals", decimal, decimal.replace(".", "")), ("decimals", decimal, last_digit_up)]
    for text in THOUSANDS:
        number = int(text.replace(",", ""))
        pairs += [("number separators", text, _with_thousands(number + 1))]
        pairs += [("number separators", text, _with_thousands(number * 10))]
    pairs += [("number separators", a, b) for a, b in NUMBERS_BY_PUNCTUATION]
    pairs += [("a word apart", a, b) for a, b in NAMES_BY_A_WORD]
    pairs += [("an initial apart", a, b) for a, b in NAMES_BY_AN_INITIAL]
    pairs += [
        ("an initial apart", a, _one_initial_changed(a)) for a in ANSWERS if INITIALS_RE.search(a)
    ]
    pairs += [("a letter apart", a, b) for a, b in NAMES_BY_A_LETTER]
    pairs += [
        ("a letter apart", a, _one_letter_changed(a)) for a in ANSWERS if re.search("[A-Za-z]", a)
    ]
    pairs += [("a hyphenated part apart", a, b) for a, b in HYPHENATED_PARTS]
    pairs += [("a hyphenated part apart", a, cut) for a in ANSWERS for cut in _hyphenated_part_dropped(a)]
    return list(dict.fromkeys(pairs))


def different_pairs() -> list[tuple[str, str]]:
    """(a, b): two different answers that must land in different classes."""
    return [(a, b) for _, a, b in labelled_different_pairs()]


# ------------------------------------------------------------------- references

SQUAD_PUNCTUATION = frozenset(string.punctuation)
TRIVIAQA_PUNCTUATION = frozenset(string.punctuation + "\u2018\u2019\u00b4`")
ARTICLE_RE = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's `normalize_answer` (`evaluate-v1.1.py`; `evaluate-v2.0.py` in
    rajpurkar/SQuAD-explorer holds the same function), step by step:

    1. `text.lower()`;
    2. every character of `string.punctuation` (ASCII only) is deleted, so "Rolls-Royce"
       is "rollsroyce", "U.S." is "us" and "1.5" is "15"; "’", "–" and "´" stay;
    3. `re.sub(r"\\b(a|an|the)\\b", " ", text)`: every article goes, even when nothing
       else remains ("The The" is "");
    4. `" ".join(text.split())`.
    """
    text = "".join(ch for ch in text.lower() if ch not in SQUAD_PUNCTUATION)
    return " ".join(ARTICLE_RE.sub(" ", text).split())


def triviaqa_normalize(text: str) -> str:
    """TriviaQA's `normalize_answer` (`evaluation/triviaqa_evaluation.py` in
    mandarjoshi90/triviaqa, which reads the gold answers through `utils/dataset_utils.py`),
    step by step:

    1. `text.replace("_", " ")`, then `lower()`;
    2. every character of `string.punctuation` and of "‘ ’ ´ `" becomes a space, so
       "Rolls-Royce" is "rolls royce", "O'Neal" is "o neal", "U.S." is "u s" and
       "1,000" is "1 000"; "ʼ", "′", "–" and the fullwidth forms stay;
    3. `re.sub(r"\\b(a|an|the)\\b", " ", text)`: every article goes ("The The" is "");
    4. `" ".join(text.split()).strip()`.
    No Unicode normalisation: "é" precomposed and decomposed, fullwidth letters and
    zero-width spaces all make other keys.
    """
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in TRIVIAQA_PUNCTUATION else ch for ch in text)
    return " ".join(ARTICLE_RE.sub(" ", text).split()).strip()


# ---------------------------------------------------------------------- measure


def _kept_together(key_a: str, key_b: str) -> bool:
    return key_a == key_b and key_a != ""


def measure(normalize: Callable[[str], str]) -> dict:
    """How `normalize` treats the corpus.

    Returns {"variants": {kind: {"total", "together", "split": [(a, b, key_a, key_b)]}},
    "different": {kind: {"total", "merged", "merged_pairs": [(a, b, key)]}},
    "split_where_triviaqa_keeps": [(kind, a, b, key_a, key_b)]}, kinds in corpus order.
    A variant pair is together when both keys are equal and not empty; a different pair
    is merged when both keys are equal (two empty keys are both no answer).
    """
    keys: dict[str, str] = {}

    def key(text: str) -> str:
        if text not in keys:
            keys[text] = normalize(text)
        return keys[text]

    variants: dict[str, dict] = {}
    split_where_triviaqa_keeps = []
    for kind, a, b in variant_pairs():
        row = variants.setdefault(kind, {"total": 0, "together": 0, "split": []})
        row["total"] += 1
        if _kept_together(key(a), key(b)):
            row["together"] += 1
            continue
        row["split"].append((a, b, key(a), key(b)))
        if _kept_together(triviaqa_normalize(a), triviaqa_normalize(b)):
            split_where_triviaqa_keeps.append((kind, a, b, key(a), key(b)))

    different: dict[str, dict] = {}
    for kind, a, b in labelled_different_pairs():
        row = different.setdefault(kind, {"total": 0, "merged": 0, "merged_pairs": []})
        row["total"] += 1
        if key(a) == key(b):
            row["merged"] += 1
            row["merged_pairs"].append((a, b, key(a)))
    return {
        "variants": variants,
        "different": different,
        "split_where_triviaqa_keeps": split_where_triviaqa_keeps,
    }


# ------------------------------------------------------------------------- print


def load_normalize_text(path: Path) -> Callable[[str], str]:
    """`normalize_text` of the Python file at `path`, loaded as a stand-alone module."""
    spec = importlib.util.spec_from_file_location(f"normalization_from_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.normalize_text


def _share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.1f}%)"


def _table(title: str, rows: list[tuple[str, int, list[int]]], labels: list[str]) -> str:
    lines = [f"| {title} | pairs | " + " | ".join(labels) + " |", "|---|---:|" + "---:|" * len(labels)]
    for name, total, counts in rows:
        lines.append(f"| {name} | {total} | " + " | ".join(_share(c, total) for c in counts) + " |")
    return "\n".join(lines)


def _rows(
    results: list[dict], section: str, count: str, labelled_kinds: list[tuple[str, tuple[str, ...]]]
) -> list[tuple[str, int, list[int]]]:
    """(label, pairs, `count` for each normaliser), each row summed over its kinds."""
    rows = []
    for label, kinds in labelled_kinds:
        total = sum(results[0][section][kind]["total"] for kind in kinds)
        rows.append((label, total, [sum(r[section][kind][count] for kind in kinds) for r in results]))
    return rows


def _variant_table(results: list[dict], labels: list[str]) -> str:
    labelled_kinds = [(kind, (kind,)) for kind in TOGETHER_KINDS]
    labelled_kinds.append(("**all of the above**", TOGETHER_KINDS))
    labelled_kinds += [(f"{kind} (informational)", (kind,)) for kind in INFORMATIONAL_KINDS]
    return _table("variant kind", _rows(results, "variants", "together", labelled_kinds), labels)


def _different_table(results: list[dict], labels: list[str]) -> str:
    kinds = tuple(results[0]["different"])
    labelled_kinds = [(kind, (kind,)) for kind in kinds] + [("**all**", kinds)]
    return _table("different answers", _rows(results, "different", "merged", labelled_kinds), labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--before", type=Path, help="a .py file whose normalize_text is measured too (an older version)"
    )
    parser.add_argument(
        "--examples", action="store_true", help="list the first 10 pairs TriviaQA keeps and semcal splits"
    )
    args = parser.parse_args(argv)

    normalizers = {"SQuAD v1.1": squad_normalize, "TriviaQA": triviaqa_normalize}
    if args.before is not None:
        normalizers["semcal before"] = load_normalize_text(args.before)
    normalizers["semcal"] = normalize_text
    labels = list(normalizers)
    results = [measure(normalize) for normalize in normalizers.values()]

    print("Variant pairs kept together (both keys equal and not empty); higher is better.\n")
    print(_variant_table(results, labels))
    print("\nDifferent-answer pairs wrongly merged (both keys equal); lower is better.\n")
    print(_different_table(results, labels))
    print()
    for label, result in zip(labels, results):
        if not label.startswith("semcal"):
            continue
        split = result["split_where_triviaqa_keeps"]
        print(f"Variant pairs TriviaQA keeps together that {label} splits: {len(split)}")
        if args.examples:
            for kind, a, b, key_a, key_b in split[:10]:
                print(f"    {kind}: {a!r} / {b!r} -> {key_a!r} / {key_b!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
