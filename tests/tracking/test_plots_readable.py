"""Every trial and study plot readable at the pixel size the MLflow artifact viewer shows it:
each label whole inside the canvas, no text under 8 pt, no two labels on top of each other,
and a pixel size that fits the content."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from PIL import Image

MIN_POINTS = 8.0


def _drawn_texts(fig):
    """The figure's texts that the Agg renderer draws: visible, non-empty, tick labels only
    for ticks inside their axis' view interval and on axes that are shown."""
    from matplotlib.text import Text

    ticks, tick_ids = [], set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            span = (hi - lo) or 1.0
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    tick_ids.add(id(label))
                    inside = lo - 1e-9 * span <= tick.get_loc() <= hi + 1e-9 * span
                    if ax.axison and axis.get_visible() and inside and label.get_visible() and label.get_text():
                        ticks.append(label)
    others = [t for t in fig.findobj(Text) if id(t) not in tick_ids and t.get_visible() and t.get_text().strip()]
    return ticks + others


def _outline(text, renderer) -> np.ndarray:
    """The corners of a text's box on the canvas, turned with the text: a window extent is an
    upright box, and those of two parallel 45-degree tick labels overlap where the labels do not."""
    box = text.get_window_extent(renderer)
    if text.get_rotation() % 90 == 0:
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    angle = np.radians(text.get_rotation())
    rotation = text.get_rotation()
    text.set_rotation(0)
    upright = text.get_window_extent(renderer)
    text.set_rotation(rotation)
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    corners = np.array([0 * along, upright.width * along, upright.width * along + upright.height * across, upright.height * across])
    return corners - corners.min(axis=0) + [box.x0, box.y0]  # the turned box touches every side of its extent


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """How deep two boxes (corner arrays) overlap: the least overlap of their shadows on the
    normals of their sides; 0 or less when they are apart (separating axis theorem)."""
    least = np.inf
    for corners in (a, b):
        for p, q in zip(corners, np.roll(corners, -1, axis=0)):
            normal = np.array([q[1] - p[1], p[0] - q[0]]) / np.hypot(*(q - p))
            shadow_a, shadow_b = a @ normal, b @ normal
            least = min(least, min(shadow_a.max(), shadow_b.max()) - max(shadow_a.min(), shadow_b.min()))
    return least


def readability_problems(fig) -> list[str]:
    """What a reader of the PNG would trip over, one line per text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a closed pyplot figure keeps only a bare canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = canvas.get_width_height()
    problems = []
    boxes = []
    for text in _drawn_texts(fig):
        box = text.get_window_extent(renderer)
        name = repr(text.get_text())
        if text.get_fontsize() < MIN_POINTS:
            problems.append(f"{name} is {text.get_fontsize()} pt")
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            problems.append(f"{name} cut at the edge: {box.bounds} outside {width}x{height}")
        boxes.append((name, _outline(text, renderer)))
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            if _overlap(box_a, box_b) > 2:
                problems.append(f"{a} overlaps {b}")
    return problems


def _keeping(saved):
    """A ``save_png`` that writes the figure and keeps it in ``saved`` by file name, its layout frozen:
    drawn again, it is the PNG as written (constrained layout may settle differently on a second
    draw, e.g. around axes of fixed aspect, and a check would then miss what was cut)."""
    from nnsearch.tracking import trial_plots

    original = trial_plots.save_png

    def keep(fig, path, **kwargs):
        saved[path.name] = fig
        written = original(fig, path, **kwargs)
        fig.set_layout_engine("none")
        return written

    return keep


@pytest.fixture
def figures(monkeypatch):
    """Every figure that nnsearch saves, by file name, kept after it is written (:func:`_keeping`)."""
    from nnsearch.tracking import trial_plots

    saved = {}
    monkeypatch.setattr(trial_plots, "save_png", _keeping(saved))
    return saved


def _folds(task, n_folds=3, n=200, classes=10, epochs=20):
    from nnsearch.fit.predictions import Predictions
    from nnsearch.fit import FoldResult

    rng = np.random.default_rng(0)
    folds = []
    for i in range(n_folds):
        history = [{"train/loss": 1 / (e + 1), "val/loss": 1.2 / (e + 1), "val/accuracy": 0.5 + e / 50, "val/f1": 0.4 + e / 50} for e in range(epochs)]
        fold = FoldResult(i, history, {"accuracy": 0.9})
        y = rng.integers(0, classes if task == "multiclass" else 2, n)
        if task == "multiclass":
            out = rng.normal(size=(n, classes))
            out[np.arange(n), y] += 2
            fold.predictions = Predictions(out.astype(np.float32), y)
        elif task == "binary":
            fold.predictions = Predictions((rng.normal(size=n) + 2 * y - 1).astype(np.float32), y)
        else:
            target = rng.normal(size=n) * 50 + 150
            fold.predictions = Predictions(target + rng.normal(size=n) * 20, target)
        folds.append(fold)
    return folds


@pytest.mark.parametrize(
    ("task", "classes", "expected"),
    [
        ("binary", ("malignant", "benign"), {"learning_curves.png", "confusion_matrix.png", "roc_pr.png"}),
        ("multiclass", tuple(f"class {k}" for k in range(10)), {"learning_curves.png", "confusion_matrix.png", "roc_pr.png"}),
        ("multiclass", tuple(f"a rather long class name {k}" for k in range(10)), {"learning_curves.png", "confusion_matrix.png", "roc_pr.png"}),
        ("regression", (), {"learning_curves.png", "regression.png"}),
    ],
)
def test_trial_plots_are_readable(tmp_path, figures, task, classes, expected):
    from nnsearch.tracking.trial_plots import write_trial_artifacts

    files = write_trial_artifacts(_folds(task), tmp_path, classes=classes)
    assert set(figures) == expected
    for name, fig in figures.items():
        assert readability_problems(fig) == [], name
    for path in files:
        if path.suffix == ".png":
            with Image.open(path) as img:
                assert 300 <= img.width <= 1600 and 250 <= img.height <= 1000, (path.name, img.size)


def _study(directions, n_trials=30, hidden=(16, 256)):
    rng = np.random.default_rng(0)

    def objective(trial):
        hidden = trial.suggest_int("model.hidden_dim", *hidden_range, log=True)
        layers = trial.suggest_int("model.n_layers", 1, 4)
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5)
        lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)
        trial.suggest_float("optimizer.weight_decay", 1e-6, 1e-2, log=True)
        trial.suggest_categorical("data.batch_size", [32, 64, 128])
        accuracy = 0.9 - 0.05 * abs(np.log10(lr) + 2.5) + 1e-4 * hidden - 0.1 * dropout + rng.normal() * 0.01
        return accuracy if len(directions) == 1 else (accuracy, float(hidden * hidden * layers))

    hidden_range = hidden
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.mark.parametrize(("directions", "metrics", "hidden"), [
    (["maximize"], ["accuracy"], (16, 256)),
    (["maximize"], ["accuracy"], (19, 25)),  # a log range inside one decade: matplotlib would label every unit
    (["maximize", "minimize"], ["accuracy", "n_params"], (16, 256)),
])
def test_study_plots_are_readable(tmp_path, figures, directions, metrics, hidden):
    from nnsearch.tracking.study_plots import write_study_plots

    files = write_study_plots(_study(directions, hidden=hidden), tmp_path, metrics=metrics)
    expected = {"optimization_history.png", "slice.png", "parallel_coordinate.png", "param_importances.png", "contour.png"}
    assert set(figures) == expected | ({"pareto_front.png"} if len(directions) > 1 else set())
    for name, fig in figures.items():
        assert readability_problems(fig) == [], name
    for path in files:
        with Image.open(path) as img:
            assert 500 <= img.width <= 2000 and 300 <= img.height <= 1000, (path.name, img.size)


MODEL_PARAMS = ("model.hidden_dim", "model.n_layers", "model.dropout", "model.activation", "optimizer.lr",
                "optimizer.weight_decay", "model.task_weights.progression")


def _model_study(directions, lr=(1e-4, 3e-2), n_trials=15):
    """A model's search as a user runs it: dotted names of 20 characters and more (Optuna cuts
    those), integer, log and string-categorical parameters."""
    rng = np.random.default_rng(1)

    def objective(trial):
        hidden = trial.suggest_int("model.hidden_dim", 32, 256, log=True)
        layers = trial.suggest_int("model.n_layers", 1, 3)
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5)
        activation = trial.suggest_categorical("model.activation", ["relu", "gelu", "tanh"])
        rate = trial.suggest_float("optimizer.lr", *lr, log=True)
        trial.suggest_float("optimizer.weight_decay", 1e-6, 1e-2, log=True)
        trial.suggest_float("model.task_weights.progression", 0.1, 10, log=True)
        accuracy = 0.9 - 0.05 * abs(np.log10(rate) + 2.5) + 1e-4 * hidden - 0.1 * dropout + 0.01 * (activation == "gelu") + rng.normal() * 0.01
        return accuracy if len(directions) == 1 else (accuracy, float(hidden * hidden * layers))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=2))
    study.optimize(objective, n_trials=n_trials)
    return study


@pytest.fixture(scope="module", params=[
    (["maximize"], (1e-4, 3e-2)),
    (["maximize", "minimize"], (1e-4, 3e-2)),
    (["maximize"], (3e-4, 9e-4)),  # inside one decade: plain tick labels, bunched at the top of a log axis
], ids=["one-objective", "pick-of-two", "narrow-log-range"])
def model_plots(request, tmp_path_factory):
    """The study plots of :func:`_model_study` by file name, as written and drawn once for the module."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from nnsearch.tracking import trial_plots
    from nnsearch.tracking.study_plots import write_study_plots

    directions, lr = request.param
    saved = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trial_plots, "save_png", _keeping(saved))
        write_study_plots(_model_study(directions, lr), tmp_path_factory.mktemp("plots"), metrics=["accuracy", "n_params"][: len(directions)], pick="accuracy")
    for fig in saved.values():
        FigureCanvasAgg(fig).draw()  # tick labels as in the PNG
    return saved


def _shown_tick_labels(axis):
    """The major tick labels a reader sees on ``axis`` of a drawn figure (on either side: a twin's
    are on the right)."""
    lo, hi = sorted(axis.get_view_interval())
    return [label.get_text() for tick in axis.get_major_ticks() if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9
            for label in (tick.label1, tick.label2) if label.get_visible() and label.get_text()]


def test_model_study_plots_are_readable(model_plots):
    assert set(model_plots) >= {"slice.png", "parallel_coordinate.png", "contour.png"}
    for name, fig in model_plots.items():
        assert readability_problems(fig) == [], name


def test_the_parallel_coordinates_name_every_parameter_in_full(model_plots):
    """``optimizer.weight_decay``, not Optuna's ``optimizer.weight_...``: two parameters may share
    the first 17 characters."""
    main = model_plots["parallel_coordinate.png"].axes[0]
    assert [label.get_text().replace("\n", "") for label in main.get_xticklabels()] == ["accuracy", *sorted(MODEL_PARAMS)]


def test_names_cut_alike_by_optuna_keep_their_own(tmp_path, figures):
    """Optuna shows both task weights as ``model.task_weigh...``; the plot tells them apart."""
    from nnsearch.tracking.study_plots import write_study_plots

    names = ["model.task_weights.progression", "model.task_weights.survival", "model.n_layers"]
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float(names[0], 0.1, 10, log=True) - t.suggest_float(names[1], 0.1, 10) + t.suggest_int(names[2], 1, 3), n_trials=8)
    write_study_plots(study, tmp_path, metrics=["accuracy"])
    main = figures["parallel_coordinate.png"].axes[0]
    assert [label.get_text().replace("\n", "") for label in main.get_xticklabels()] == ["accuracy", *sorted(names)]
    assert readability_problems(figures["parallel_coordinate.png"]) == []


def test_integer_parameters_read_in_whole_numbers(model_plots):
    """``model.n_layers`` (1 to 3) reads 1, 2, 3, not 1.25 or 2.50: in the slice and on its axis of
    the parallel coordinates, an unlabelled twin whose spine stands at the parameter's x tick."""
    fig = model_plots["parallel_coordinate.png"]
    main = fig.axes[0]
    at = {label.get_text().replace("\n", ""): x for x, label in zip(main.get_xticks(), main.get_xticklabels())}
    right = main.get_xlim()[1]

    def twin(name):
        return next(ax for ax in fig.axes if ax is not main and ax.get_shared_x_axes().joined(ax, main)
                    and abs(ax.spines["right"].get_position()[1] * right - at[name]) < 1e-6)

    axes = {f"parallel {name}": twin(name).yaxis for name in ("model.n_layers", "model.hidden_dim")}
    axes["slice model.n_layers"] = next(ax.xaxis for ax in model_plots["slice.png"].axes if ax.get_xlabel() == "model.n_layers")
    for where, axis in axes.items():
        labels = _shown_tick_labels(axis)
        assert len(labels) >= 2 and all(float(text.replace("\N{MINUS SIGN}", "-")).is_integer() for text in labels), (where, labels)


def test_categories_read_as_the_values_given(model_plots):
    """relu, not 'relu' (Optuna's slice plot draws each category's repr)."""
    for name, fig in model_plots.items():
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                if axis.get_label_text() == "model.activation":
                    assert sorted(_shown_tick_labels(axis)) == ["gelu", "relu", "tanh"], name


def test_a_long_name_stays_under_its_own_slice(model_plots):
    """``model.task_weights.progression`` would reach under its neighbours' panels: each name stays
    between the panels on either side of its own."""
    fig = model_plots["slice.png"]
    renderer = fig.canvas.get_renderer()
    panels = sorted((ax for ax in fig.axes if ax.get_label() != "<colorbar>"), key=lambda ax: ax.get_position().x0)
    assert len(panels) == len(MODEL_PARAMS)
    for left, ax, right in zip([None, *panels[:-1]], panels, [*panels[1:], None]):
        box = ax.xaxis.label.get_window_extent(renderer)
        assert (left.bbox.x1 if left else 0) <= box.x0 and box.x1 <= (right.bbox.x0 if right else fig.bbox.width), ax.get_xlabel()


def test_study_plots_leave_the_trial_plots_style_alone(tmp_path):
    """Optuna's plots switch matplotlib to its ggplot style; the trial plots drawn later in the same
    process (a study without fold processes) keep their white panels."""
    import matplotlib

    from nnsearch.tracking.study_plots import write_study_plots

    before = dict(matplotlib.rcParams)
    write_study_plots(_study(["maximize"], hidden=(16, 256)), tmp_path, metrics=["accuracy"])
    assert matplotlib.rcParams["axes.facecolor"] == before["axes.facecolor"]
    assert {k: v for k, v in matplotlib.rcParams.items() if before.get(k) != v and not k.startswith("backend")} == {}


@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]], ids=["one-objective", "pick-of-two"])
def test_the_best_trials_are_dark_and_no_line_is_white(tmp_path, figures, directions):
    """Higher accuracy is darker in the parallel coordinates and the contour, whether accuracy is the
    only objective or the pick of two (Optuna colours any picked objective as one to minimize);
    the worst trial's line still shows on the white panel."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgb

    from nnsearch.tracking.study_plots import write_study_plots

    write_study_plots(_study(directions), tmp_path, metrics=["accuracy", "n_params"][: len(directions)])

    def lightness(mappable, value):
        return sum(to_rgb(mappable.get_cmap()(mappable.norm(value))))

    lines = next(c for ax in figures["parallel_coordinate.png"].axes for c in ax.collections if isinstance(c, LineCollection))
    values = lines.get_array()
    assert lightness(lines, values.max()) < lightness(lines, values.min()) < 2.7  # white is 3.0
    filled = next(c for ax in figures["contour.png"].axes if ax.get_label() != "<colorbar>" for c in ax.collections if getattr(c, "filled", False))
    assert lightness(filled, filled.levels.max()) < lightness(filled, filled.levels.min())


def test_the_check_catches_a_cut_label_and_small_text():
    from nnsearch.tracking.trial_plots import figure

    fig, axes = figure(3, 2)
    fig.set_layout_engine("none")
    axes[0, 0].set_ylabel("a label far too long to fit in this margin " * 2, fontsize=8)
    axes[0, 0].set_title("tiny", fontsize=6)
    axes[0, 0].text(0.5, 0.5, "one", fontsize=9)
    axes[0, 0].text(0.5, 0.5, "two", fontsize=9)
    fig.subplots_adjust(left=0.02)
    problems = readability_problems(fig)
    assert any("cut at the edge" in p for p in problems) and any("'tiny' is 6" in p for p in problems)
    assert "'one' overlaps 'two'" in problems


def test_the_check_sees_turned_labels_as_drawn():
    from nnsearch.tracking.trial_plots import figure

    fig, axes = figure(6, 4)
    ax = axes[0, 0]
    for x, label in ((0.2, "parallel label one"), (0.3, "parallel label two")):  # upright extents overlap, the labels do not
        ax.text(x, 0.2, label, fontsize=9, rotation=45, rotation_mode="anchor")
    ax.text(0.2, 0.6, "crossing one", fontsize=9, rotation=30)
    ax.text(0.2, 0.6, "crossing two", fontsize=9, rotation=30)
    assert readability_problems(fig) == ["'crossing one' overlaps 'crossing two'"]


def test_turned_class_names_end_at_their_own_column(tmp_path, figures):
    from nnsearch.fit.predictions import pooled
    from nnsearch.tracking.trial_plots import confusion_matrix

    names = tuple(f"a rather long class name {k}" for k in range(4))
    confusion_matrix(pooled(_folds("multiclass", classes=4)), tmp_path / "cm.png", task="multiclass", classes=names)
    fig = figures["cm.png"]
    fig.canvas.draw()
    ax = fig.axes[0]
    for label, x in zip(ax.get_xticklabels(), ax.get_xticks()):
        column = ax.transData.transform((x, 0))[0]
        assert abs(label.get_window_extent().x1 - column) < 10, label.get_text()  # its upper end at the column, not in the next


def test_a_multitask_trial_draws_each_targets_own_figures(tmp_path, figures):
    import torch

    from nnsearch.data.dataset import TargetSpec, Task
    from nnsearch.fit import FoldResult
    from nnsearch.fit.predictions import fold_predictions
    from nnsearch.models.multitask import MultiTaskModule
    from nnsearch.tracking.trial_plots import write_trial_artifacts

    targets = (TargetSpec("kind", Task.MULTICLASS, ("red", "green", "blue")), TargetSpec("sex", Task.BINARY, ("female", "male")),
               TargetSpec("progression", Task.REGRESSION))
    torch.manual_seed(0)
    module = MultiTaskModule(torch.nn.Linear(4, 5), targets, lambda params: torch.optim.SGD(params, lr=0.1), target_scale=((0, 1), (0, 1), (150.0, 50.0)))
    x = torch.randn(120, 4)
    y = torch.stack([torch.randint(0, 3, (120,)).float(), torch.randint(0, 2, (120,)).float(), torch.randn(120)], dim=1)
    folds = []
    for i in range(2):
        rows = slice(60 * i, 60 * (i + 1))
        history = [{"train/loss": 1 / (e + 1), "val/loss": 1.1 / (e + 1), "val/kind/accuracy": 0.5 + e / 50, "val/progression/rmse": 50 - e} for e in range(5)]
        fold = FoldResult(i, history, {"kind/accuracy": 0.6})
        fold.predictions = fold_predictions(module, x[rows], y[rows])
        folds.append(fold)

    files = write_trial_artifacts(folds, tmp_path, task="multitask", targets=targets)
    written = {p.relative_to(tmp_path).as_posix() for p in files}
    assert {"plots/learning_curves.png", "plots/kind/confusion_matrix.png", "plots/kind/roc_pr.png", "plots/sex/confusion_matrix.png",
            "plots/sex/roc_pr.png", "plots/progression/regression.png"} <= written, written
    # the numeric target in its own units (the module trains on it standardized)
    truths = np.concatenate([f.predictions.targets[:, 2] for f in folds])
    assert np.allclose(truths, y[:, 2].numpy() * 50 + 150, atol=1e-4)
    for name, fig in figures.items():
        assert readability_problems(fig) == [], name
    # a target's figure opened alone says which target it shows (the last target of each kind drawn is kept by name)
    titles = {name: [ax.get_title() for ax in fig.axes if ax.get_title()] for name, fig in figures.items()}
    assert titles["confusion_matrix.png"][0].startswith("sex: confusion matrix"), titles
    assert all(t.startswith("sex: ") for t in titles["roc_pr.png"]), titles
    assert all(t.startswith("progression: ") for t in titles["regression.png"]), titles
