"""Commands that act on a finished (or interrupted) study: ``python -m nnsearch +study=NAME command=X``.

- ``leaderboard``: the top ``report.top_k`` complete trials, CV mean ± std, parameters (the
  Pareto front marked with ``*`` for several objectives).
- ``export``: ``best_config.yaml`` (and ``pareto/trial-NNNN.yaml``) into the Hydra output folder.
- ``seeds``: the chosen configuration cross-validated (and, with a test split, retrained and
  tested) with ``final.seeds`` seeds; mean ± std over seeds, printed and logged as a ``seeds``
  child run of the study's parent run. Seed 0 is the trial's own, so its CV score repeats the trial.
- ``final``: retrain the chosen configuration and log the MLflow model again (e.g. with
  ``final.register_name=NAME`` to register it).
- ``make_example_data``: write the example image folder of an image-folder study at its
  ``data.path`` (needs no study yet).

The study is found by ``study.name`` and ``study.storage`` as given on the command line. Its
configuration comes from the study itself (stored when the study ran), so the trials' settings
are used even when the command line does not repeat every override; ``report.*``, ``final.*``,
``study.storage`` and ``tracking.uri`` of the command line apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError

log = logging.getLogger("nnsearch")


def run_command(cfg: DictConfig) -> None:
    """Dispatch ``cfg.command``; an unknown one lists the choices."""
    name = str(cfg.command)
    if name not in COMMANDS:
        raise NNSearchError(f"Unknown command '{name}'; choose one of run, storage_server, {', '.join(COMMANDS)}.")
    COMMANDS[name](cfg)


def load_finished_study(cfg: DictConfig) -> tuple[Any, DictConfig]:
    """The record of the Optuna study named by the config (``record.study`` is the study), and
    the configuration its trials ran with."""
    import optuna

    from nnsearch.study.session import optuna_logging_to_warnings
    from nnsearch.config.credentials import redact
    from nnsearch.storage import open_storage
    from nnsearch.study.record import CONFIG, StudyRecord

    optuna_logging_to_warnings()
    storage = open_storage(cfg.study.storage)
    try:
        study = optuna.load_study(study_name=cfg.study.name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        where = redact(cfg.study.storage) if cfg.study.storage else "./optuna.journal"
        raise NNSearchError(
            f"No study '{cfg.study.name}' in {where}; studies there: {', '.join(names) or 'none'} (set +study=NAME or study.name=...)."
        ) from None
    record = StudyRecord(study, storage)
    stored = record.get(CONFIG)
    if stored is None:
        log.warning("study '%s' has no stored configuration (it never reached its end); using the command line's", study.study_name)
        return record, cfg
    ran = OmegaConf.create(stored)
    for key in ("report", "final"):
        if cfg.get(key) is not None:
            OmegaConf.update(ran, key, cfg[key], merge=False)
    OmegaConf.update(ran, "study.storage", cfg.study.storage, merge=False)
    OmegaConf.update(ran, "tracking.uri", cfg.tracking.uri, merge=False)
    OmegaConf.update(ran, "command", "run", merge=False)
    return record, ran


def _ranking(study: Any, cfg: DictConfig) -> Any:
    from nnsearch.tracking import leaderboard
    raw = cfg.study.metric
    metrics = [str(m) for m in (raw if OmegaConf.is_list(raw) or isinstance(raw, (list, tuple)) else [raw])]
    if len(metrics) != len(study.directions):
        metrics = None
    ranking = leaderboard.rank(study, metrics=metrics, pick=OmegaConf.select(cfg, "report.pareto_pick", default=None))
    if ranking.chosen is None:
        raise NNSearchError(f"Study '{study.study_name}' has no complete trial yet; run it first: python -m nnsearch +study={cfg.study.name}")
    return ranking


def show_leaderboard(cfg: DictConfig) -> None:
    from nnsearch.tracking import leaderboard

    record, ran = load_finished_study(cfg)
    study = record.study
    ranking = _ranking(study, ran)
    top_k = int(OmegaConf.select(ran, "report.top_k", default=10) or 10)
    table = leaderboard.rows(ranking, top_k=top_k)
    goals = ", ".join(f"{m} ({d})" for m, d in zip(ranking.metrics, ranking.directions))
    print(f"Study '{study.study_name}': {len(ranking.trials)} complete trials, objective(s) {goals}; top {len(table)}:")
    if ranking.multi:
        print(f"* = on the Pareto front ({len(ranking.front)} trials); order: report.pareto_pick={ranking.pick_metric}")
    print(leaderboard.format_table(table, ranking.metrics, width=leaderboard.stdout_width()), flush=True)


def export(cfg: DictConfig) -> None:
    from nnsearch.study.report import export_configs, output_dir

    record, ran = load_finished_study(cfg)
    study = record.study
    ranking = _ranking(study, ran)
    out = output_dir()
    texts = export_configs(ran, ranking, out)
    print(f"Exported trial {ranking.chosen.number} of study '{study.study_name}': {out / 'best_config.yaml'}")
    for rel in texts:
        if rel != "best_config.yaml":
            print(f"  Pareto trial: {out / rel}")
    print(f"  reproduce: python -m nnsearch --config-path {out.resolve()} --config-name best_config", flush=True)


def _tracker_of(record: Any, ran: DictConfig) -> Any:
    """A tracker writing under the study's existing parent run (not reopened, not re-closed): its
    ``seeds`` and ``final-model`` child runs (:meth:`Tracker.log_seeds`, :meth:`Tracker.final_run`)."""
    from nnsearch.tracking.settings import TrackingSettings
    from nnsearch.study.record import PARENT_RUN
    from nnsearch.tracking.runs import Tracker

    tracking = TrackingSettings.from_config(ran.tracking)
    tracker = Tracker(tracking.absolute_uri, tracking.experiment)
    tracker.parent_run_id = record.get(PARENT_RUN)
    return tracker


def seeds(cfg: DictConfig) -> None:
    """Cross-validate (and test) the chosen configuration with several seeds: is it robust?"""
    from nnsearch.study.session import prepare
    from nnsearch.study.final_fit import final_epochs, fit_final
    from nnsearch.study.objective import summarize_folds
    from nnsearch.study.report import best_config, output_dir
    from nnsearch.tracking.trial_plots import write_csv
    from nnsearch.cv.in_turn import InTurn
    from nnsearch.cv.splits import fold_seed
    from nnsearch.study.trials import original_number

    record, ran = load_finished_study(cfg)
    study = record.study
    ranking = _ranking(study, ran)
    chosen = ranking.chosen
    n = int(OmegaConf.select(ran, "final.seeds", default=3) or 3)
    if n < 1:
        raise NNSearchError(f"final.seeds must be a positive integer, got {n}.")
    base_cfg = best_config(ran, chosen.params, original_number(chosen))
    p = prepare(base_cfg)
    epochs = final_epochs(ran, chosen, len(p.folds))
    table = []
    for i in range(n):
        seed = int(base_cfg.seed) + i
        cv = summarize_folds(InTurn(p.data, p.folds).fit_folds(base_cfg, seed=seed, epoch_metrics=p.epoch_metrics, results=[]))
        row: dict[str, Any] = {"seed": seed, **{k: v for k, v in cv.items() if not k.endswith("_std")}}
        if p.test is not None:
            fit = fit_final(base_cfg, p.data, p.test, seed=fold_seed(seed, 0), epochs=epochs)
            row.update({f"test/{k}": v for k, v in fit.test_metrics.items()})
        table.append(row)
        log.info("seed %d: %s", seed, ", ".join(f"{k} = {v:.4f}" for k, v in row.items() if k != "seed" and k.split("/")[-1] in ranking.metrics))
    keys = [k for k in table[0] if k != "seed"]
    summary = {k: (float(np.mean([r[k] for r in table])), float(np.std([r[k] for r in table]))) for k in keys}
    print(f"Trial {chosen.number} of study '{study.study_name}' with {n} seeds ({table[0]['seed']}..{table[-1]['seed']}): mean ± std over seeds")
    for key, (mean, std) in summary.items():
        print(f"  {key:<16} {mean:.4f} ± {std:.4f}")
    path = write_csv(table + [{"seed": "mean", **{k: m for k, (m, _) in summary.items()}}, {"seed": "std", **{k: s for k, (_, s) in summary.items()}}], output_dir() / "seeds.csv")
    print(f"Per seed: {path}", flush=True)
    _tracker_of(record, ran).log_seeds(trial_number=chosen.number, n_seeds=n, summary=summary, table=path)


def final(cfg: DictConfig) -> None:
    """Retrain the chosen configuration and log (and optionally register) the MLflow model."""
    from nnsearch.study.session import prepare
    from nnsearch.study.report import best_config, final_model
    from nnsearch.config.credentials import redact
    from nnsearch.study.trials import original_number

    record, ran = load_finished_study(cfg)
    study = record.study
    ranking = _ranking(study, ran)
    p = prepare(best_config(ran, ranking.chosen.params, original_number(ranking.chosen)))
    tracker = _tracker_of(record, ran)
    if not tracker.parent_run_id:
        raise NNSearchError(f"Study '{study.study_name}' has no MLflow parent run in {redact(tracker.uri)}; run the study first.")
    print("\n".join(final_model(ran, tracker, record, p, ranking, {}, again=True)), flush=True)


def make_example_data(cfg: DictConfig) -> None:
    """Write the example image folder (scikit-learn's digits as PNG files) at ``data.path`` of an image-folder study."""
    from pathlib import Path

    from nnsearch.data.example_images import write_digits

    if not str(cfg.data.get("_target_", "")).endswith("load_image_folder"):
        raise NNSearchError("command=make_example_data writes an image folder: use it with data=image_folder (e.g. +study=digits_folder_cnn).")
    path = OmegaConf.select(cfg, "data.path", default=None)
    if path in (None, "???", ""):
        raise NNSearchError("command=make_example_data needs data.path, the folder to write.")
    root = write_digits(Path(str(path)))
    print(f"Example images: scikit-learn's 1797 digits as 8x8 PNG files in {root.resolve()}/0..9", flush=True)


COMMANDS: dict[str, Callable[[DictConfig], None]] = {"leaderboard": show_leaderboard, "export": export, "seeds": seeds, "final": final,
                                                     "make_example_data": make_example_data}
