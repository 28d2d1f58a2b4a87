"""A generated text-sentiment data set, so a text study runs without downloading anything.

Reviews are drawn from small word lists with a fixed seed: an opinion word (``good``, ``awful``,
...) sets the label, a ``not`` before it flips it, and filler words and other sentences surround it.
A bag of words cannot tell ``not good`` from ``good``; a sequence model can, so the study measures
whether word order is learned. About 5 % of labels are flipped at random, so no model scores 1.0.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("nnsearch")

POSITIVE = ("good", "great", "wonderful", "lovely", "excellent", "delightful", "superb", "charming", "brilliant", "enjoyable")
NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "poor", "dreadful", "weak", "tedious", "clumsy")
SUBJECTS = ("the film", "this movie", "the plot", "the acting", "the soundtrack", "the ending", "the script", "the cast", "the story", "the director")
VERBS = ("was", "is", "seemed", "felt", "looked")
INTENSIFIERS = ("", "", "really ", "very ", "quite ", "truly ", "rather ")
FILLER = (
    "i watched it on a sunday",
    "my friend picked it",
    "the cinema was full",
    "we had popcorn",
    "it lasts two hours",
    "i saw it last week",
    "the tickets were cheap",
    "it rained outside",
)


def make_sentiment_rows(n: int = 2000, *, seed: int = 0, noise: float = 0.05) -> tuple[list[str], list[str]]:
    """``n`` reviews and their labels (``positive``/``negative``)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        positive = bool(rng.integers(2))
        negated = rng.random() < 0.4
        word_list = POSITIVE if positive != negated else NEGATIVE
        opinion = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {'not ' if negated else ''}{rng.choice(INTENSIFIERS)}{rng.choice(word_list)}"
        parts = [str(rng.choice(FILLER)) for _ in range(int(rng.integers(0, 3)))]
        parts.insert(int(rng.integers(0, len(parts) + 1)), opinion)
        texts.append(" , ".join(parts))
        labels.append("positive" if positive != (rng.random() < noise) else "negative")
    return texts, labels


def write_sentiment_csv(path: str | Path, n: int = 2000, *, seed: int = 0) -> Path:
    """Write the reviews to a CSV with columns ``review`` and ``sentiment``."""
    import pandas as pd

    texts, labels = make_sentiment_rows(n, seed=seed)
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"review": texts, "sentiment": labels}).to_csv(file, index=False)
    return file


def load_sentiment_example(path: str = "sentiment_reviews.csv", *, n: int = 2000, seed: int = 0, **text_settings: Any) -> Any:
    """:func:`nnsearch.data.text.load_text` on the generated reviews, written to ``path`` on first use."""
    from nnsearch.data.text import load_text

    file = Path(path).expanduser()
    if not file.exists():
        write_sentiment_csv(file, n, seed=seed)
        log.info("wrote the example reviews to %s (%d rows)", file.resolve(), n)
    return load_text(str(file), "review", "sentiment", **text_settings)
