"""Release 0.1's names for the grouping B, still read for one more release.

Release 0.1 spelled B four ways: `collapse` and `collapse_args` in a task's YAML and in
`--metadata`, the filter `semcal_classes`, `--classes` and `--classes-args` on the
command line, and `Collapser`, `get_collapser`, ... in Python. Every place a user types
B now says `grouping`. What a user types in the old spelling still works and warns once,
naming the new one; what a saved run holds in it (a record's `collapse` field, a filter
step's settings in a results file) is read without a word, since nobody can retype it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

# Old setting name -> today's, in a filter step's settings and in `--metadata`.
OLD_SETTING_NAMES = {"collapse": "grouping", "collapse_args": "grouping_args"}

# The filter's registered name in release 0.1.
OLD_FILTER_NAME = "semcal_classes"

# The command-line options of `semcal rescore` and `semcal agree` in release 0.1.
OLD_OPTIONS = {"--classes": "--grouping", "--classes-args": "--grouping-args"}

# Public Python names of release 0.1 -> today's.
OLD_PYTHON_NAMES = {
    "Collapser": "Grouping",
    "CollapserSpec": "GroupingSpec",
    "KeyCollapser": "KeyGrouping",
    "available_collapsers": "available_groupings",
    "check_collapser": "check_grouping",
    "get_collapser": "get_grouping",
    "preflight_collapser": "preflight_grouping",
    "register_collapser": "register_grouping",
}


def old_spelling_message(old: str, new: str) -> str:
    """What a user who typed `old`, release 0.1's spelling of `new`, is told."""
    return f"{old} is now spelled {new}; the old spelling is read for one more release"


def warn_old_spelling(old: str, new: str) -> None:
    """Warn (FutureWarning, which Python shows users) that `old` is release 0.1's spelling of `new`."""
    warnings.warn(old_spelling_message(old, new), FutureWarning, stacklevel=3)


def renamed_settings(settings: Mapping[str, Any], *, warn: bool) -> dict[str, Any]:
    """`settings` with release 0.1's setting names replaced by today's.

    Parameters
    ----------
    settings : mapping
        A filter step's settings, or a run's metadata.
    warn : bool
        True where a user typed them (a YAML, `--metadata`): each old name warns. False
        for what a saved run holds.

    Returns
    -------
    dict
        The same settings under today's names, in the same order.

    Raises
    ------
    ValueError
        When both spellings of one setting are given.

    Examples
    --------
    >>> renamed_settings({"style": "cot", "collapse": "exact"}, warn=False)
    {'style': 'cot', 'grouping': 'exact'}
    """
    for old, new in OLD_SETTING_NAMES.items():
        if old in settings and new in settings:
            raise ValueError(f"both {old} and {new} are given: keep {new} ({old} is its old spelling)")
    if warn:
        for old in OLD_SETTING_NAMES.keys() & settings.keys():
            warn_old_spelling(old, OLD_SETTING_NAMES[old])
    return {OLD_SETTING_NAMES.get(key, key): value for key, value in settings.items()}


def renamed_attribute(module: str, name: str) -> str:
    """Today's name for `name`, a public name of `module` in release 0.1 (DeprecationWarning).

    Raises AttributeError, as a module does, for any other name.
    """
    if name not in OLD_PYTHON_NAMES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = OLD_PYTHON_NAMES[name]
    warnings.warn(
        f"{module}.{name} is now {module}.{new}; the old name is kept for one more release",
        DeprecationWarning,
        stacklevel=3,
    )
    return new
