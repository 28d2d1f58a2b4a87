"""Bad input ends in one clear line and a non-zero exit, before any trial, leaving nothing behind."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from nnsearch.errors import NNSearchError


def _nothing_written(tmp_path):
    assert not (tmp_path / "mlflow.db").exists(), "an MLflow store was created for a failed start"
    assert not (tmp_path / "optuna.journal").exists(), "a study was created for a failed start"
    assert not list(tmp_path.glob(".mlflow.db.new-*")), "the MLflow store built ahead of the smoke test was left"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+study=digits_mlp", "data=csv", "data.path=missing.csv", "data.target=y"], "Data file not found"),
        (["+study=digits_mlp", "model=transfomer"], "unknown model 'transfomer'; choose one of: autoencoder, cnn, gan, gru, lightning, lstm, mlp, net, rnn, transformer. Did you mean transformer?"),
        (["+study=digits_mlp", "trainer.max_epoch=3"], "trainer.max_epoch is not a setting (to add a new key, write +trainer.max_epoch=3). Did you mean trainer.max_epochs?"),
        (["+study=digts_mlp"], "no study named 'digts_mlp': no studies/digts_mlp.yaml in"),
        (["+study=text_sentiment_lstm", "data=text", "data.path=reviews.csv", "data.text=comment", "data.target=sentiment"],
         "Text column 'comment' is not in reviews.csv; its columns are: review, sentiment"),
        (["+study=digits_mlp", "data=csv", "data.path=reviews.xlsx", "data.target=sentiment"],
         "data=csv reads .csv, .tsv and .parquet files (by extension); reviews.xlsx has '.xlsx': rename it or convert it."),
    ],
    ids=["missing-file", "unknown-model", "misspelt-setting", "unknown-study", "missing-text-column", "unknown-extension"],
)
def test_cli_prints_one_line_and_exits_non_zero(run_cli, tmp_path, args, message):
    for name in ("reviews.csv", "reviews.xlsx"):
        (tmp_path / name).write_text("review,sentiment\ngood film,positive\nbad film,negative\n")
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("nnsearch: error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    _nothing_written(tmp_path)


def test_an_unknown_study_suggests_the_nearest_shipped_one(run_cli):
    result = run_cli("+study=digts_mlp")
    assert result.stderr.rstrip().endswith("text_sentiment_lstm, text_sentiment_transformer, wine_mlp). Did you mean digits_mlp?")


def test_cli_rejects_search_space_with_low_above_high(run_cli, tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "bad.yaml").write_text(
        "# @package _global_\nsearch_space:\n  optimizer.lr: {type: float, low: 0.1, high: 0.01}\n"
    )
    result = run_cli("+study=bad")
    assert result.returncode == 2
    assert result.stderr.strip() == "nnsearch: error: search_space.optimizer.lr: low (0.1) is greater than high (0.01)."
    _nothing_written(tmp_path)


def _csv(tmp_path, text):
    path = tmp_path / "table.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("overrides", "make_csv", "message"),
    [
        (["data.target=nope"], "a,b,y\n1,2,0\n3,4,1\n", "Target column 'nope' is not in table.csv; its columns are: a, b, y"),
        (["data.target=y", "data.max_categories=2"], "a,b,y\n1,x,0\n3,4,1\n5,z,0\n", "String column 'b' of table.csv has 3 distinct values, more than data.max_categories=2"),
        (["data.target=y"], "a,b,y\n1,,0\n3,4,1\n", "Feature column 'b' of table.csv has 1 missing value(s); set data.impute=median or data.impute=most_frequent"),
    ],
)
def test_bad_csv_files(run_in_process, tmp_path, overrides, make_csv, message):
    path = _csv(tmp_path, make_csv)
    with pytest.raises(NNSearchError, match=re.escape(message)):
        run_in_process("data=csv", f"data.path={path}", *overrides)
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "text", "message"),
    [
        (["data.text=review"], "review,y\ngood,1\n,0\n", "Text column 'review' of table.csv has 1 empty text(s) (first in data row 2); drop or fill those rows."),
        (["data.text=review", "data.tokenizer=chars"], "review,y\ngood,1\nbad,0\n", "data.tokenizer must be one of word, bpe, wordpiece; got 'chars'."),
        (["data.text=review", "data.max_length=0"], "review,y\ngood,1\nbad,0\n", "data.max_length must be an integer of at least 1, got 0."),
        (["data.text=y"], "review,y\ngood,1\nbad,0\n", "data=text needs a target column: add data.target=COLUMN (columns: review, y)."),
        (["data.text=review", "model=mlp", "~search_space"], "review,y\n" + "good film,1\nbad film,0\n" * 8,
         "data 'table' is text as token ids: use model=rnn, lstm, gru or transformer (an embedding reads them), not nnsearch.models.mlp.MLP."),
    ],
)
def test_bad_text_files(run_in_process, tmp_path, overrides, text, message):
    path = _csv(tmp_path, text)
    target = [] if "data.text=y" in overrides else ["data.target=y"]
    with pytest.raises(NNSearchError, match=re.escape(message)):
        run_in_process("+study=text_sentiment_lstm", "data=text", f"data.path={path}", *target, *overrides)
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+study=digits_mlp", "study.metric=auc"], "Unknown objective metric 'auc'; choose one of accuracy"),
        (["+study=digits_mlp", "study.metric=rmse"], "Metric 'rmse' does not apply to a multiclass task"),
        (["+study=digits_mlp", "sampler.n_startup_trialz=3"], None),
        (["+study=digits_mlp", "+sampler.bogus=1"], "sampler: cannot build optuna.samplers.TPESampler"),
        (["+study=digits_mlp", "+pruner.bogus=1"], "pruner: cannot build optuna.pruners.MedianPruner"),
        (["+study=digits_mlp", "model.activation=swish"], "Unknown activation 'swish'"),
        (["data=iris", "cv.folds=60"], "has 40 sample\\(s\\), fewer than cv.folds=60"),
        (["data=digits", "model=cnn"], "model=cnn needs image data"),
        (["+study=digits_mlp", "study.n_trials=0"], "study.n_trials must be a positive integer"),
        (["+study=digits_mlp", "sampler=grid"], "sampler=grid cannot enumerate the log-scaled search_space.model.hidden_dim"),
    ],
)
def test_invalid_settings_fail_before_any_trial(run_in_process, tmp_path, overrides, message):
    if message is None:  # an option the group does not have: Hydra rejects it while composing
        from hydra.errors import ConfigCompositionException

        with pytest.raises(ConfigCompositionException, match="Could not override .sampler.n_startup_trialz."):
            run_in_process(*overrides)
    else:
        with pytest.raises(NNSearchError, match=message):
            run_in_process(*overrides)
    _nothing_written(tmp_path)


def test_unknown_search_space_path_suggests_the_nearest(run_in_process, tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "typo.yaml").write_text(
        "# @package _global_\nsearch_space:\n  model.hiden_dim: {type: int, low: 8, high: 16}\n"
    )
    with pytest.raises(NNSearchError, match="search_space.model.hiden_dim: no such config value. Did you mean model.hidden_dim"):
        run_in_process("+study=typo")


def test_npz_without_y_is_rejected(run_in_process, tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((10, 3)))
    with pytest.raises(NNSearchError, match="lacks array\\(s\\) y"):
        run_in_process("data=npz", f"data.path={tmp_path / 'd.npz'}")


# Checks before any trial (issue 15): each refusal is one line, exit code 2, and leaves no study, no
# MLflow store and no Hydra run folder behind.


def _refused(result, tmp_path, message):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnsearch: error: "), result.stderr[-2000:]
    assert message in lines[0], lines[0]
    assert "folds at a time" not in result.stdout  # the fold processes' line comes once the start passed
    _nothing_written(tmp_path)
    assert not (tmp_path / "outputs").exists(), f"a run folder was left: {sorted(p.name for p in (tmp_path / 'outputs').rglob('*'))}"
    return lines[0]


def _study(tmp_path, name, text):
    (tmp_path / "studies").mkdir(exist_ok=True)
    (tmp_path / "studies" / f"{name}.yaml").write_text(text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data=iris", "optimizer.lr=-1"], "optimizer torch.optim.Adam rejects its settings: Invalid learning rate: -1"),
        pytest.param(["data=iris", "scheduler=plateau", "scheduler.mode=lowest"],
                     "(with scheduler torch.optim.lr_scheduler.ReduceLROnPlateau) rejects its settings: mode lowest is unknown", marks=pytest.mark.slow),
        pytest.param(["data=iris", "model.hidden_dim=0"], "model.hidden_dim must be at least 1, got 0.", marks=pytest.mark.slow),
    ],
    ids=["optimizer-lr", "scheduler-mode", "model-width"],
)
def test_a_setting_the_constructor_rejects_fails_once_before_the_study(run_cli, tmp_path, args, message):
    _refused(run_cli(*args), tmp_path, message)


def test_a_search_space_bound_that_fails_every_trial_there_is_refused_naming_it(run_cli, tmp_path):
    # dropout 1 is refused by the model itself ("must be in [0, 1)"); torch's Dropout(1.0) would
    # train on zeros. Today each trial at the bound fails; the smoke test builds both bounds.
    _study(tmp_path, "dropout1", "# @package _global_\nsearch_space:\n  model.dropout: {type: float, low: 1, high: 1}\n")
    _refused(run_cli("+study=dropout1"), tmp_path, "error: search_space.model.dropout=1.0: model.dropout must be in [0, 1), got 1.0.")


def test_a_categorical_with_mixed_types_is_refused(run_cli, tmp_path):
    _study(tmp_path, "mixed", "# @package _global_\nsearch_space:\n  model.hidden_dim: {type: categorical, choices: [32, \"64\"]}\n")
    _refused(run_cli("+study=mixed"), tmp_path, "search_space.model.hidden_dim: choices mix types: 32 (number), '64' (str)")


@pytest.mark.parametrize(
    ("choices", "ok"), [("[null, 32, 64]", True), ("[0.5, 1]", True), ("[relu, null]", True), ("[true, 1]", False), ("[relu, 2]", False)]
)
def test_categorical_choices_of_one_type_with_none_or_ints_and_floats_are_accepted(choices, ok):
    from omegaconf import OmegaConf

    from nnsearch.study.search_space import _parse_distribution

    entry = OmegaConf.to_container(OmegaConf.create(f"{{type: categorical, choices: {choices}}}"))
    if ok:
        _parse_distribution("model.x", entry)
    else:
        with pytest.raises(NNSearchError, match="choices mix types"):
            _parse_distribution("model.x", entry)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0", "0"), pytest.param("-4", "-4", marks=pytest.mark.slow), pytest.param("2.5", "2.5", marks=pytest.mark.slow),
     pytest.param("many", "'many'", marks=pytest.mark.slow)],
    ids=["zero", "negative", "fraction", "text"],
)
def test_a_batch_size_that_is_not_a_positive_integer_is_refused(run_cli, tmp_path, value, shown):
    _refused(run_cli("data=iris", f"data.batch_size={value}"), tmp_path, f"data.batch_size must be a positive integer, got {shown}.")


@pytest.mark.parametrize(
    ("value", "shown"), [("-1", "-1"), pytest.param("0", "0", marks=pytest.mark.slow), pytest.param("soon", "'soon'", marks=pytest.mark.slow)],
    ids=["negative", "zero", "text"],
)
def test_a_timeout_that_is_not_a_positive_number_is_refused(run_cli, tmp_path, value, shown):
    _refused(run_cli("data=iris", f"study.timeout={value}"), tmp_path, f"study.timeout must be a positive number of seconds (or null for no limit), got {shown}.")


@pytest.mark.slow
def test_bruteforce_over_a_continuous_range_is_refused_and_the_existing_study_is_untouched(run_cli, tmp_path):
    from conftest import TINY

    assert run_cli("+study=digits_mlp", *TINY).returncode == 0
    journal = (tmp_path / "optuna.journal").read_bytes()
    runs = sorted(p.name for p in (tmp_path / "outputs" / "digits_mlp").iterdir())
    done = run_cli("+study=digits_mlp", "sampler=bruteforce", *TINY)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip() == (
        "nnsearch: error: sampler=bruteforce tries every value of every parameter, so each float needs a `step` (or a list of "
        "`values`); search_space.model.dropout, search_space.optimizer.lr, search_space.optimizer.weight_decay are continuous. "
        "Use sampler=tpe or sampler=random for continuous ranges."
    )
    assert (tmp_path / "optuna.journal").read_bytes() == journal, "the refused command wrote to the study"
    assert sorted(p.name for p in (tmp_path / "outputs" / "digits_mlp").iterdir()) == runs, "the refused command left a run folder"


@pytest.mark.parametrize(
    ("setting", "make", "message"),
    [
        ("study.storage={tmp}/notes.txt/optuna.journal", "file", "study.storage: cannot create {tmp}/notes.txt/optuna.journal: {tmp}/notes.txt is a file, not a folder."),
        pytest.param("study.storage={tmp}/studies_dir", "dir", "study.storage: {tmp}/studies_dir is a folder; give the path of a file", marks=pytest.mark.slow),
        pytest.param("tracking.uri=sqlite:///{tmp}/notes.txt/runs/mlflow.db", "file",
                     "tracking.uri: cannot create {tmp}/notes.txt/runs/mlflow.db: {tmp}/notes.txt is a file, not a folder.", marks=pytest.mark.slow),
    ],
    ids=["journal-under-a-file", "journal-is-a-folder", "mlflow-under-a-file"],
)
def test_a_store_that_cannot_be_written_is_refused_before_anything_is_written(run_cli, tmp_path, setting, make, message):
    # Tests run as root, for whom chmod does not stop writing; a path through a regular file fails for
    # anyone, and so does a folder where a file belongs. Mode bits are covered in-process below.
    (tmp_path / "notes.txt").write_text("not a folder")
    (tmp_path / "studies_dir").mkdir()
    _refused(run_cli("data=iris", setting.format(tmp=tmp_path)), tmp_path, message.format(tmp=tmp_path))


def test_a_folder_this_user_cannot_write_is_named(tmp_path, monkeypatch):
    """What ``os.access`` says for a read-only folder as a non-root user (as root it grants writing)."""
    import os

    from nnsearch.study.preflight import check_stores
    from conftest import compose

    cfg = compose(["data=iris", f"study.storage={tmp_path}/optuna.journal"])
    monkeypatch.setattr(os, "access", lambda path, mode: str(path) != str(tmp_path))
    with pytest.raises(NNSearchError, match=f"study.storage: cannot write {tmp_path}/optuna.journal: folder {tmp_path} is not writable by this user."):
        check_stores(cfg)


def test_a_directory_given_as_the_data_file_is_called_a_directory(run_cli, tmp_path):
    (tmp_path / "tables").mkdir()
    _refused(run_cli("data=csv", "data.path=tables", "data.target=y"), tmp_path, "data.path=tables is a directory; data=csv reads one table file (.csv, .tsv or .parquet): give its path.")


def test_a_study_file_that_is_not_a_mapping_is_refused_naming_the_file(run_cli, tmp_path):
    _study(tmp_path, "bogus", "cd foo\npython -m nnsearch\n")
    line = _refused(run_cli("+study=bogus"), tmp_path, f"study file {tmp_path / 'studies' / 'bogus.yaml'} is not a YAML mapping of settings")
    assert "'cd foo python -m nnsearch'" in line
    assert run_cli("+study=bogus", "--help").returncode == 0  # the other studies and the help still work


def test_a_refused_command_keeps_earlier_run_folders(run_cli, tmp_path):
    kept = tmp_path / "outputs" / "default" / "earlier-run" / "best_config.yaml"
    kept.parent.mkdir(parents=True)
    kept.write_text("x: 1\n")
    done = run_cli("data=iris", "data.batch_size=0")
    assert done.returncode == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "outputs").rglob("*")) == [
        "outputs/default", "outputs/default/earlier-run", "outputs/default/earlier-run/best_config.yaml"
    ]


@pytest.mark.slow
def test_a_study_without_a_search_space_runs_one_trial_and_says_why(run_cli, tmp_path):
    from conftest import load_study

    done = run_cli("data=iris", "study.n_trials=3", "cv.folds=2", "trainer.max_epochs=1", "final.retrain=false", "report.study_plots=false")
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in (done.stdout + done.stderr).splitlines() if "search_space is empty" in line]
    assert len(said) == 1 and "running 1 trial instead of study.n_trials=3" in said[0] and "command=seeds" in said[0], said
    assert len(load_study(tmp_path, "default").trials) == 1


SHIPPED = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))


def _register_upstream_models(cfg, store) -> list[str]:
    """A study that starts from another shipped study's registered model (``models:/NAME/latest`` as
    ``model.init_from`` or ``distill.teacher``) gets that model, untrained, registered in ``store``; returns
    the overrides that point the study at it."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from conftest import compose
    from nnsearch.config.building import build, build_network
    from nnsearch.cv import fit_scaler
    from nnsearch.study.final_fit import FinalFit
    from nnsearch.study.final_model import log_final_model
    from nnsearch.tracking.runs import Tracker

    uris = [str(u) for u in (OmegaConf.select(cfg, "model.init_from"), OmegaConf.select(cfg, "distill.teacher")) if u]
    if not uris:
        return []
    uri = f"sqlite:///{store / 'mlflow.db'}"
    tracker = Tracker(uri, "upstream")
    tracker.open_parent("upstream", None, {}, {})
    for name in (u.split("/")[1] for u in uris if u.startswith("models:/")):
        source = next(compose([f"+study={s}"]) for s in SHIPPED if compose([f"+study={s}"]).final.register_name == name)
        dev = build("data", source.data)
        net = build_network(source, dev.input_shape, dev.n_outputs)
        fit = FinalFit(SimpleNamespace(net=net), fit_scaler("standard", dev.X), {}, 1, 0, len(dev.y), 0)
        log_final_model(tracker, fit, dev, trial=None, params={}, register_name=name)
    return [f"tracking.uri={uri}"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_study_passes_the_smoke_test(name, tmp_path, tmp_path_factory, monkeypatch):
    """Each parameter at its bounds builds and trains one step (the GAN: builds, without the step). A study
    that starts from another study's model (transfer, distillation) finds it registered, untrained."""
    from conftest import compose

    from nnsearch.data.example_images import write_shapes
    from nnsearch.study.session import prepare
    from nnsearch.study.smoke import probes

    store = tmp_path_factory.mktemp("upstream")
    monkeypatch.chdir(store)  # the upstream models' artifacts (./mlruns) go there
    upstream = _register_upstream_models(compose([f"+study={name}"]), store)
    monkeypatch.chdir(tmp_path)
    # an image-folder study's folder is written by command=make_example_data: here a small one, outside the run folder
    images = [f"data.path={write_shapes(tmp_path_factory.mktemp('images'), per_class=12, size=8)}"] if name == "digits_folder_cnn" else []
    # the text studies write their generated reviews on first use: here outside the run folder too
    texts = [f"data.path={tmp_path_factory.mktemp('texts') / 'reviews.csv'}"] if name.startswith("text_sentiment") else []
    p = prepare(compose([f"+study={name}", *upstream, *images, *texts]))
    assert len(probes(p.space)) > len(p.space)  # the base config and at least one value per parameter
    assert not list(tmp_path.iterdir())


def test_the_smoke_test_of_an_image_folder_prints_no_warning_about_its_few_rows(tmp_path, tmp_path_factory, monkeypatch):
    """Its two validation batches miss classes; torchmetrics' warning about that would say nothing true of the study."""
    import warnings

    from conftest import compose

    from nnsearch.data.example_images import write_digits
    from nnsearch.study.session import prepare

    monkeypatch.chdir(tmp_path)
    folder = write_digits(tmp_path_factory.mktemp("images"))  # as command=make_example_data writes it: 10 classes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare(compose(["+study=digits_folder_cnn", f"data.path={folder}"]))
    assert not [str(w.message) for w in caught if "samples in targets" in str(w.message)]


def test_the_smoke_test_catches_a_nan_loss_naming_the_value(tmp_path, monkeypatch):
    from conftest import compose

    from nnsearch.study.session import prepare

    monkeypatch.chdir(tmp_path)
    cfg = compose(["data=wine", "model=autoencoder", "data.task=reconstruction", "study.metric=recon_mse"])
    cfg.search_space = {"model.bottleneck": {"type": "int", "low": 1, "high": 2}}
    import nnsearch.models.autoencoder_module as ae

    real = ae.AutoencoderModule.row_errors
    monkeypatch.setattr(ae.AutoencoderModule, "row_errors", lambda self, x: real(self, x) * (float("nan") if self.net.encoder[-1].out_features == 2 else 1.0))
    with pytest.raises(NNSearchError, match=r"^search_space.model.bottleneck=2: the first training step fails: loss is nan$"):
        prepare(cfg)


def test_a_multitask_target_list_with_an_unknown_column_is_one_line(run_cli, tmp_path):
    _csv(tmp_path, "a,b,kind,value\n1,2,x,0.5\n3,4,y,1.5\n")
    result = run_cli("+study=digits_mlp", "data=csv", "data.path=table.csv", "data.target=[kind,colour]")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "nnsearch: error: Target column(s) colour of data.target=['kind', 'colour'] not in table.csv; its columns are: a, b, kind, value."
    )
    _nothing_written(tmp_path)
    assert not (tmp_path / "outputs").exists()
