"""How the pages of `semcal report`, `compare` and `agree` show results: numbers, file names, figures.

Each page keeps its own precision (the report's tables four decimals, the comparison
page three), so the formatters take the number of digits; a missing value or interval
(NaN, e.g. with the bootstrap off) reads "n/a". The figures are drawn on an Agg canvas
with a fixed seed and settings restored afterwards, so a page is reproducible and the
caller's matplotlib and numpy state is left as it was.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib as mpl
import numpy as np
import relplot
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["FONT_SIZE", "bounds", "figure", "file_name", "number", "numpy_global_seed", "plotting", "with_interval"]

FONT_SIZE = 11


def number(value: float, digits: int) -> str:
    """`value` with `digits` decimals; "n/a" for NaN."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def bounds(low: float, high: float, digits: int) -> str:
    """An interval as "[low, high]" with `digits` decimals; "n/a" when either bound is NaN."""
    return "n/a" if math.isnan(low) or math.isnan(high) else f"[{low:.{digits}f}, {high:.{digits}f}]"


def with_interval(value: float, low: float, high: float, digits: int) -> str:
    """The value and its interval as "value [low, high]"; the value alone when the interval is missing."""
    if math.isnan(low) or math.isnan(high):
        return number(value, digits)
    return f"{number(value, digits)} {bounds(low, high, digits)}"


def file_name(text: str) -> str:
    """`text` as part of a file name: each run of characters other than word characters, '.' and '-' made '_'."""
    return re.sub(r"[^\w.-]+", "_", text)


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator inside the block; its state is given back afterwards."""
    # relplot's bootstrap band is drawn by sklearn's BaggingRegressor from numpy's global
    # generator: seed it so that a figure is reproducible, and give the caller its state back.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextmanager
def plotting(relplot_style: bool = False) -> Iterator[None]:
    """The settings every figure is drawn under, restored when the block ends.

    Parameters
    ----------
    relplot_style : bool, default False
        Start from relplot's own style (`relplot.diagrams.set_default_style`), as the
        report's diagram drawn by relplot does; the font size is set after it.
    """
    # relplot styles through matplotlib's global rcParams; rc_context gives them back.
    with mpl.rc_context(), numpy_global_seed(0), warnings.catch_warnings():
        # relplot's bagging calls pandas the way pandas 3 deprecates; nothing to act on.
        warnings.filterwarnings("ignore", message="Passing a dict to DataFrame.from_records")
        if relplot_style:
            relplot.diagrams.set_default_style()
        mpl.rcParams["font.size"] = FONT_SIZE
        yield


def figure(width: float, height: float) -> Figure:
    """A figure of `width` x `height` inches on an Agg canvas."""
    # Not pyplot: no GUI backend, no figure left open.
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig
