"""A trial figure's layout taken from the study's earlier figure of the same kind, when its text is the same.

Constrained layout measures every title, axis label, tick label and legend entry of a figure
twice, and was the largest part of a trial figure's CPU (a third to a half), paid again for each
trial although successive trials draw the same figures: the confusion matrix and the ROC/PR
curves of a data set have the same class names, ticks and legend lines every time, only other
numbers in them; the learning curves often do too. Matplotlib keeps nothing between figures, so
this module remembers, per figure shape, where constrained layout put the axes and what text it
measured then (with each digit read as ``0``: the default font's digits all have the same width).

A new figure of that shape is first put in the remembered places and its text read there, as
constrained layout would read it: titles, axis labels, offset texts, the tick labels within
view (with where the first and last of each axis fall, which decides how far they reach past the
axes' ends) and the legends' entries. Only when all of it matches is the layout taken over: every
label then has the size it had in the figure that constrained layout placed, so it fits as that
one did (``tests/tracking/test_figure_layout.py`` compares the pixels with a freshly laid-out
figure). Anything else, a different count of ticks or a longer label, lays the figure out again.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

KEPT_PER_SHAPE = 4  # text variants remembered per figure shape (the learning curves' tick labels vary between trials)
_remembered: dict[tuple, list[tuple[tuple, list[tuple[float, float, float, float]]]]] = {}
_lock = threading.Lock()


def lay_out(fig: Any, engine: Any) -> None:
    """Place ``fig``'s axes as ``engine`` (its constrained layout) would: from memory when the
    text matches a figure of the same shape laid out before, else by running it and remembering."""
    shape = _shape(fig)
    with _lock:
        variants = list(_remembered.get(shape, ()))
    if variants:
        before = [(ax.get_position(original=True).bounds, ax.get_in_layout()) for ax in fig.axes]
        for texts, places in variants:
            _place(fig, places)
            if _texts(fig) == texts:
                return
        _place(fig, [place for place, _ in before])  # where constrained layout starts from: its result depends on it
        for ax, (_, in_layout) in zip(fig.axes, before, strict=True):
            ax.set_in_layout(in_layout)
    engine.execute(fig)
    remembered = (_texts(fig), [tuple(ax.get_position(original=True).bounds) for ax in fig.axes])
    with _lock:
        _remembered[shape] = [remembered, *_remembered.get(shape, ())][:KEPT_PER_SHAPE]


def _place(fig: Any, places: list) -> None:
    for ax, place in zip(fig.axes, places, strict=True):
        ax.set_position(place)  # which="both"; it also takes the axes out of layout management


def forget() -> None:
    """Drop every remembered layout (tests)."""
    with _lock:
        _remembered.clear()


def _shape(fig: Any) -> tuple:
    """The figure's size and resolution, its grid of axes and how many legends it has."""
    grid = tuple((ss.get_geometry(), ax.get_aspect()) if (ss := ax.get_subplotspec()) is not None else None for ax in fig.axes)
    return tuple(fig.get_size_inches()), fig.dpi, grid, len(fig.legends)


def _texts(fig: Any) -> tuple:
    """What constrained layout measures, with the axes where they are now."""
    parts: list[Any] = [tuple(_legend(leg) for leg in fig.legends)]
    for ax in fig.axes:
        parts.append((
            tuple(_text(ax.get_title(loc=loc)) for loc in ("left", "center", "right")),
            ax.title.get_fontsize(),
            _axis(ax.xaxis, horizontal=True),
            _axis(ax.yaxis, horizontal=False),
            _legend(ax.get_legend()),
            ax.axison,
        ))  # fmt: skip
    return tuple(parts)


def _axis(axis: Any, *, horizontal: bool) -> tuple:
    """An axis' label, offset text and tick labels within view, and where the outermost fall (in hundredths of the axis)."""
    labels = axis.get_majorticklabels()  # ticks updated for the axis' present size
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) or 1.0
    at = [(t.get_position()[0 if horizontal else 1], t) for t in labels]
    shown = sorted(((x, t) for x, t in at if lo <= x <= hi and t.get_text()), key=lambda pair: pair[0])
    ends = tuple(round(100 * (x - lo) / span) for x, _ in (shown[:1] + shown[-1:])) if axis.get_scale() == "linear" else tuple(x for x, _ in shown)
    first = shown[0][1] if shown else None
    style = (first.get_fontsize(), first.get_rotation(), first.get_horizontalalignment()) if first is not None else None
    return (_text(axis.label.get_text()) if axis.label.get_visible() else None, axis.label.get_fontsize(), _text(axis.get_offset_text().get_text()),
            tuple(_text(t.get_text()) for _, t in shown), ends, style)  # fmt: skip


def _legend(legend: Any) -> tuple | None:
    if legend is None or not legend.get_visible():
        return None
    return tuple(_text(t.get_text()) for t in legend.get_texts()), tuple(t.get_fontsize() for t in legend.get_texts()[:1])


def _text(text: str) -> str:
    """``text`` with each digit read as 0 when the digits are as wide as each other (not in math text)."""
    return re.sub(r"[0-9]", "0", text) if "$" not in text and _even_digits() else text


@functools.cache
def _even_digits() -> bool:
    """Whether the default font draws every digit the same width (DejaVu Sans, matplotlib's default, does)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties()
    return len({round(text_to_path.get_text_width_height_descent(d, prop, ismath=False)[0], 6) for d in "0123456789"}) == 1
