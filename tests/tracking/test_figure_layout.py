"""Each trial draws the same figures; one whose text matches the last of its kind takes that one's
layout instead of running constrained layout again, and must look exactly as if it had."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tracking.test_plots_readable import figures, readability_problems  # noqa: F401 - figures: the fixture that keeps each saved figure


@pytest.fixture(autouse=True)
def nothing_remembered():
    from nnsearch.tracking import figure_layout

    figure_layout.forget()
    yield
    figure_layout.forget()


def _predictions(seed: int, signal: float):
    from nnsearch.fit.predictions import Predictions

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, 400)
    out = rng.normal(size=(400, 10))
    out[np.arange(400), y] += signal
    return Predictions(out.astype(np.float32), y)


def _folds(loss_scale: float, epochs: int = 20):
    from nnsearch.fit import FoldResult

    return [FoldResult(i, [{"train/loss": loss_scale / (e + 1), "val/loss": 1.2 * loss_scale / (e + 1), "val/accuracy": 0.5 + e / 50}
                           for e in range(epochs)], {"accuracy": 0.9}) for i in range(3)]


def _pixels(path):
    return np.asarray(Image.open(path))


def _drawn_twice(draw, first, second, tmp_path):
    """``second`` drawn after ``first`` (it may take its layout), and drawn alone (constrained layout's own)."""
    from nnsearch.tracking import figure_layout

    draw(first, tmp_path / "first.png")
    draw(second, tmp_path / "after.png")
    figure_layout.forget()
    draw(second, tmp_path / "alone.png")
    return _pixels(tmp_path / "after.png"), _pixels(tmp_path / "alone.png")


@pytest.mark.parametrize("figure", ["roc_pr_curves", "confusion_matrix"])
def test_the_next_trials_figure_with_other_numbers_looks_as_constrained_layout_draws_it(figure, tmp_path):
    from nnsearch.tracking import figure_layout, trial_plots

    def draw(pred, path):
        getattr(trial_plots, figure)(pred, path, task="multiclass")

    after, alone = _drawn_twice(draw, _predictions(0, 3.0), _predictions(1, 1.0), tmp_path)
    assert after.shape == alone.shape
    assert (after != alone).any(axis=-1).sum() == 0
    assert len(figure_layout._remembered) == 1 and all(len(v) == 1 for v in figure_layout._remembered.values())  # taken over, not laid out again


@pytest.mark.parametrize("scales", [(1.0, 1500.0), (1500.0, 1.0), (1.0, 0.001)], ids=["wider ticks", "narrower ticks", "other ticks"])
def test_learning_curves_with_other_tick_labels_are_laid_out_again(scales, tmp_path):
    from nnsearch.tracking.trial_plots import learning_curves

    after, alone = _drawn_twice(learning_curves, _folds(scales[0]), _folds(scales[1]), tmp_path)
    assert after.shape == alone.shape
    assert (after != alone).any(axis=-1).sum() == 0


def test_a_figure_drawn_after_another_of_its_kind_is_readable(figures, tmp_path):  # noqa: F811 - the fixture
    from nnsearch.tracking.trial_plots import learning_curves, roc_pr_curves

    for i, scale in enumerate((1.0, 1500.0, 1.0)):
        learning_curves(_folds(scale, epochs=10 + 5 * i), tmp_path / f"lc{i}.png")
        assert readability_problems(figures[f"lc{i}.png"]) == []
    for i, signal in enumerate((3.0, 0.5)):
        roc_pr_curves(_predictions(i, signal), tmp_path / f"roc{i}.png", task="multiclass")
        assert readability_problems(figures[f"roc{i}.png"]) == []
