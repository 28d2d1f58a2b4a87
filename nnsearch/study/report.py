"""The end of a study: the terminal summary, the parent run's report, the exported configuration
and the final model.

What a user gets, without opening any child run:

- terminal: trial counts, the best trial (or the Pareto front), the top of the leaderboard, the
  held-out test score beside the CV estimate, and where everything was written;
- parent run artifacts: ``leaderboard.csv`` (top ``report.top_k``), ``pareto_front.csv`` (several
  objectives), ``best_config.yaml`` (and ``pareto/trial-NNNN.yaml``), ``plots/*.png`` (Optuna's
  study plots, :mod:`nnsearch.tracking.study_plots`), uploaded in one call; metrics ``best/{metric}``,
  ``best/{metric}_std`` and ``test/{metric}``;
- a ``final-model`` child run with the retrained model (:mod:`nnsearch.study.final_model`).

Which trial is exported and retrained: the best one; with several objectives, the Pareto trial
best on ``report.pareto_pick`` (default: the first objective), see :mod:`nnsearch.tracking.leaderboard`.
``best_config.yaml`` re-runs it (``python -m nnsearch --config-path DIR --config-name best_config``).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.config.credentials import redact, redacted_yaml, scrub
from nnsearch.study.search_space import SearchSpace
from nnsearch.study.trials import original_number

if TYPE_CHECKING:
    from nnsearch.study.session import Prepared

log = logging.getLogger("nnsearch")


def output_dir() -> Path:
    """Hydra's run folder when running under Hydra, else ``./outputs``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        path = Path("outputs")
        path.mkdir(exist_ok=True)
        return path


def best_config(cfg: DictConfig, params: dict[str, Any], number: int = 0) -> DictConfig:
    """The study's config with the best trial's values applied: one trial, no search left.

    Trial N (or a retry of trial N) trains with torch seed ``seed + N``; the export's ``seed`` is set to that value (after
    every interpolation of the original seed, such as ``cv.seed``, is resolved) so that its single
    trial 0 repeats the best trial exactly.
    """
    best = SearchSpace.apply(cfg, params)
    OmegaConf.update(best, "search_space", {}, merge=False)
    OmegaConf.update(best, "study.name", f"{cfg.study.name}-best", merge=False)
    OmegaConf.update(best, "study.n_trials", 1, merge=False)
    OmegaConf.update(best, "study.enqueue", None, merge=False)
    OmegaConf.update(best, "tracking.experiment", f"{cfg.study.name}-best", merge=False)
    if best.get("command") is not None:
        OmegaConf.update(best, "command", "run", merge=False)
    for key in ("study.storage", "tracking.uri"):  # the export is shared; its passwords are not
        if OmegaConf.select(best, key):
            OmegaConf.update(best, key, redact(OmegaConf.select(best, key)), merge=False)
    resolved = OmegaConf.create(OmegaConf.to_container(best, resolve=True))
    resolved.seed = int(cfg.seed) + number
    return resolved


def _exported(config: DictConfig) -> str:
    """A config as the YAML file a user re-runs with ``--config-name``; the re-run writes under
    ``outputs/NAME-best/TIME`` (Hydra's own default would be a bare date folder)."""
    config = config.copy()
    config.hydra = {"run": {"dir": "outputs/${study.name}/${now:%Y-%m-%d_%H-%M-%S}"}, "job": {"chdir": False}}
    return scrub(OmegaConf.to_yaml(config))


def remember_config(record: Any, cfg: DictConfig, metrics: list[str]) -> None:
    """Store the study's composed config (in nnsearch's record) and objective names (Optuna's
    ``set_metric_names``, which optuna-dashboard shows on its axes) on the Optuna study.

    The commands that act on a finished study (``leaderboard``, ``export``, ``seeds``) then work
    from the configuration the trials actually ran with, whatever overrides the command line
    repeats.
    """
    from nnsearch.study.record import CONFIG

    record.set(CONFIG, redacted_yaml(cfg))  # the commands take the URLs from their own command line
    if record.study.metric_names != list(metrics):
        record.study.set_metric_names(list(metrics))


def export_configs(cfg: DictConfig, ranking: Any, *out_dirs: Path, chosen_config: DictConfig | None = None) -> dict[str, str]:
    """``best_config.yaml`` for the chosen trial and, with several objectives, one file per
    Pareto trial in ``pareto/``; written under each of ``out_dirs``; returns {relative path: YAML}.
    ``chosen_config``: the chosen trial's :func:`best_config`, when the caller has it already
    (building one takes a tenth of a second of OmegaConf)."""
    texts: dict[str, str] = {}
    if ranking.chosen is None:
        return texts
    chosen = chosen_config if chosen_config is not None else best_config(cfg, ranking.chosen.params, original_number(ranking.chosen))
    texts["best_config.yaml"] = _exported(chosen)
    if ranking.multi:
        for trial in ranking.front:
            config = chosen if trial.number == ranking.chosen.number else best_config(cfg, trial.params, original_number(trial))
            texts[f"pareto/trial-{trial.number:04d}.yaml"] = _exported(config)
    for out_dir in out_dirs:
        for rel, text in texts.items():
            path = out_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return texts


def _setting(cfg: DictConfig, path: str, default: Any) -> Any:
    value = OmegaConf.select(cfg, path, default=default)
    return default if value is None and default is not None else value


def finish(cfg: DictConfig, record: Any, tracker: Any, p: Prepared, *, reason: str, seconds: float, helper: Any = None) -> None:
    """Print the summary, write the report and the exports, retrain the chosen configuration,
    and close the parent run as FINISHED. ``record``: the study's :class:`~nnsearch.study.record.StudyRecord`.

    ``helper``: the study's :class:`~nnsearch.cv.pool.FoldPool`, if it has one. Its processes
    are idle once the trials are done, so one of them retrains the final model (started first:
    the fit and then logging the model is the longest chain left) and two others draw the study
    plots (seconds of CPU: fANOVA, constrained layout, PNG encoding;
    :data:`~nnsearch.tracking.study_plots.PLOT_GROUPS`), while this process writes the report;
    it then logs the model. Without them, or if they fail to start, the plots are drawn here
    first. Either way they are in ``plots/`` before the parent run's artifacts are uploaded.
    """
    from optuna.trial import TrialState

    from nnsearch.tracking import leaderboard
    from nnsearch.tracking.trial_plots import write_csv

    metrics_names = list(p.objectives.metrics)
    study = record.study
    remember_config(record, cfg, metrics_names)
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in (TrialState.COMPLETE, TrialState.PRUNED)}
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    skipped = sum(1 for t in failed if t.user_attrs.get("skipped"))  # surplus/duplicate starts of parallel workers
    counts["fail"] = len(failed) - skipped
    if not counts["complete"]:
        _no_trial_completed(study, tracker, reason, counts, failed)
    ranking = leaderboard.rank(study, metrics=metrics_names, pick=_setting(cfg, "report.pareto_pick", None))
    chosen = ranking.chosen
    report_dir = tempfile.TemporaryDirectory(prefix="nnsearch-report-")
    artifacts = Path(report_dir.name)
    # first the final fit: retraining and then logging the model is the longest chain left, the rest goes beside it
    final = FinalModel.start(cfg, tracker, record, p, ranking, helper=helper) if chosen is not None and _setting(cfg, "final.retrain", True) else None
    plots = None
    if _setting(cfg, "report.study_plots", True) and counts["complete"]:  # beside the final fit, in other processes
        if helper is None:
            tracker.flush()  # drawn here: after the last trials' figures, not beside them on the tracker's thread
        plots = _start_study_plots(cfg, study, artifacts / "plots", metrics_names, ranking.pick_metric, helper)
    lines = [
        "",
        f"Study '{study.study_name}' ({reason}) in {seconds:.1f} s: "
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed trials"
        + (f" ({skipped} skipped by parallel workers)." if skipped else "."),
    ]
    metrics: dict[str, float] = {}
    with report_dir:
        top_k = int(_setting(cfg, "report.top_k", 10))
        table = leaderboard.rows(ranking, top_k=top_k)
        if table:
            write_csv(table, artifacts / "leaderboard.csv")
        if chosen is None:
            lines.append("No trial completed" + (" with all constraints met" if ranking.trials else "") + ", so there is no best configuration.")
        elif ranking.multi:
            front = leaderboard.rows(leaderboard.Ranking(ranking.metrics, ranking.directions, ranking.front, ranking.front, ranking.pick_metric))
            write_csv(front, artifacts / "pareto_front.csv")
            goals = ", ".join(f"{m} ({d})" for m, d in zip(ranking.metrics, ranking.directions))
            lines.append(f"Pareto front: {len(ranking.front)} trial(s) that no other trial beats on every objective: {goals}")
            lines.append(leaderboard.format_table(front, ranking.metrics, width=leaderboard.stdout_width()))
            lines.append(f"Chosen for best_config.yaml (report.pareto_pick={ranking.pick_metric}): trial {chosen.number}")
        else:
            lines.append(f"Best trial {chosen.number}: {metrics_names[0]} = {chosen.value:.4f} ({ranking.directions[0]})")
            for name, value in chosen.params.items():
                lines.append(f"  {name} = {leaderboard.short_value(value)}")  # as the leaderboard shows it
        if chosen is not None:
            lines.append(f"Cross-validated metrics of trial {chosen.number} (mean ± std over folds):")
            cv_keys = [key for key in chosen.user_attrs if key.startswith("cv/") and not key.endswith("_std")]
            width = max([10] + [len(key) - 3 for key in cv_keys])  # multi-task names (sex/accuracy) are longer
            for key in cv_keys:
                value = chosen.user_attrs[key]
                std = chosen.user_attrs.get(f"{key}_std", float("nan"))
                lines.append(f"  {key[3:]:<{width}} {value:.4f} ± {std:.4f}")
                metrics[f"best/{key[3:]}"] = value
                metrics[f"best/{key[3:]}_std"] = std
            texts = export_configs(cfg, ranking, output_dir(), artifacts, chosen_config=final.trial_cfg if final is not None else None)
            path = output_dir() / "best_config.yaml"
            lines.append(f"Best configuration: {path}" + (f" (and {len(texts) - 1} Pareto trial(s) in {path.parent / 'pareto'})" if ranking.multi else ""))
            lines.append(f"  reproduce: python -m nnsearch --config-path {path.parent.resolve()} --config-name best_config")
            if not ranking.multi and len(ranking.trials) > 1:
                lines.append(f"Leaderboard (top {min(top_k, len(ranking.trials))} of {len(ranking.trials)} complete trials):")
                lines.append(leaderboard.format_table(table[:top_k], ranking.metrics, width=leaderboard.stdout_width()))
        if final is not None:
            lines += final.finish(tracker, metrics)
        if plots is not None:
            _wait_for_study_plots(plots, study, artifacts / "plots", metrics_names, ranking.pick_metric)
        tags = {"state": "finished", "stop_reason": reason, "trials.complete": counts["complete"], "trials.pruned": counts["pruned"], "trials.failed": counts["fail"]}
        if chosen is not None:
            tags["best_trial"] = chosen.number
            if ranking.multi:
                tags["pareto_trials"] = ",".join(str(t.number) for t in ranking.front)
        tracker.flush()  # the last trials' artifacts (drawn meanwhile on the tracker's thread), before the study's run closes
        tracker.close_parent("FINISHED", metrics={k: v for k, v in metrics.items() if _finite(v)}, tags=tags, artifacts=artifacts)
    lines.append(f"Optuna storage: {redact(cfg.study.storage) if cfg.study.storage else 'optuna.journal'} (study '{study.study_name}')")
    lines.append(f"MLflow: {redact(tracker.uri)}, {tracker.run_url()}")
    if tracker.uri.startswith(("http://", "https://")):
        lines.append(f"  trials: {tracker.ui_link()}")
    else:
        lines.append(f"  browse: mlflow ui --backend-store-uri {redact(tracker.uri)}   then open {tracker.ui_link()}")
    print("\n".join(wrapped(lines, leaderboard.stdout_width())), flush=True)


COPIED = ("reproduce:", "browse:", "trials:")  # lines a user copies as a whole: a command, a link


def wrapped(lines: list[str], width: int | None) -> list[str]:
    """The summary's prose broken between words to ``width`` columns; None (a file or a pipe): as is.

    A terminal breaks a line that is too long wherever its edge falls, mid-word. Tables come sized to
    the width already (several lines in one item), and a command or link a user copies stays on one
    line: a line break inside it would reach the shell or the browser.
    """
    import textwrap

    if width is None:
        return lines
    out = []
    for line in lines:
        indent = line[: len(line) - len(line.lstrip())]
        if "\n" in line or len(line) <= width or line.lstrip().startswith(COPIED):
            out.append(line)
            continue
        out += textwrap.wrap(line, width=width, initial_indent="", subsequent_indent=indent + "  ", break_long_words=False,
                             break_on_hyphens=False, drop_whitespace=True) or [line]
    return out


def _start_study_plots(cfg: DictConfig, study: Any, out_dir: Path, metrics: list[str], pick: str, helper: Any) -> Any:
    """The study plots, drawn by two of ``helper``'s processes (Futures of their paths), or here (None) when there is no helper."""
    from nnsearch.tracking.study_plots import PLOT_GROUPS, write_stored_study_plots, write_study_plots

    if helper is not None:
        try:
            return [helper.submit(write_stored_study_plots, cfg.study.storage, study.study_name, out_dir, metrics=metrics, pick=pick, only=group)
                    for group in PLOT_GROUPS]
        except Exception as err:  # noqa: BLE001 - a broken or closed pool: draw them here
            log.debug("study plots: drawing them here (%s)", err)
    write_study_plots(study, out_dir, metrics=metrics, pick=pick)
    return None


def _wait_for_study_plots(plots: Any, study: Any, out_dir: Path, metrics: list[str], pick: str) -> None:
    """The helper's plots; if a process failed (died, or could not load the study), they are all drawn here."""
    from nnsearch.tracking.study_plots import write_study_plots

    try:
        for group in plots:
            group.result()
    except Exception as err:  # noqa: BLE001 - a plot must never fail the study
        log.debug("study plots: the fold process could not draw them (%s); drawing them here", err)
        write_study_plots(study, out_dir, metrics=metrics, pick=pick)


def _no_trial_completed(study: Any, tracker: Any, reason: str, counts: dict[str, int], failed: list) -> None:
    """A study without a complete trial has no result: close its parent run FAILED and say why, in one line."""
    from nnsearch.errors import StudyFailed

    reasons = [t.user_attrs.get("fail_reason") for t in failed if not t.user_attrs.get("skipped") and t.user_attrs.get("fail_reason")]
    last = f"; last failure: {reasons[-1]}" if reasons else ""
    tracker.flush()
    tracker.close_parent("FAILED", tags={"state": "no trial completed", "stop_reason": reason})
    raise StudyFailed(
        f"no trial of study '{study.study_name}' completed ({counts['pruned']} pruned, {counts['fail']} failed{last}), "
        f"so there is no best configuration ({reason})."
    )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def final_model(cfg: DictConfig, tracker: Any, record: Any, p: Prepared, ranking: Any, metrics: dict[str, float], *, again: bool = False,
                helper: Any = None) -> list[str]:
    """Retrain the chosen trial on all development rows, score it on the test split, log it;
    the report's lines about it (:class:`FinalModel`, started and finished at once)."""
    return FinalModel.start(cfg, tracker, record, p, ranking, again=again, helper=helper).finish(tracker, metrics)


class FinalModel:
    """The final model of the chosen trial: retrained on all development rows, scored on the test
    split and logged, in two steps so that the report is written while it trains.

    ``helper``: the study's fold processes, if it has them: one of them retrains (beside those
    drawing the study plots), so this process never imports Lightning.

    A resumed study whose chosen trial did not change keeps the final model it already logged
    (its ``final-model`` run, found through the study record ``nnsearch.final_model``): the
    same trial retrained again would be the same model; ``again`` (``command=final``) retrains
    anyway. A failure here is reported, not raised: the study itself is complete and recorded.
    """

    def __init__(self, cfg: DictConfig, record: Any, p: Prepared, chosen: Any) -> None:
        self.cfg, self.record, self.p, self.chosen = cfg, record, p, chosen
        self.trial_cfg: DictConfig | None = None  # the chosen trial's config, when it is retrained
        self.kept: Any = None  # the final-model run logged earlier for the same trial
        self.lines: list[str] | None = None  # decided without a fit
        self.seed, self.epochs = 0, 0
        self.started: Any = None  # the fit running in a fold process (a Future), or the error starting it

    @classmethod
    def start(cls, cfg: DictConfig, tracker: Any, record: Any, p: Prepared, ranking: Any, *, again: bool = False, helper: Any = None) -> FinalModel:
        """Decide whether to retrain and, with fold processes, start the fit in one of them."""
        from concurrent.futures.process import BrokenProcessPool

        from nnsearch.cv.splits import fold_seed
        from nnsearch.study.final_fit import final_epochs, fit_final_served

        final = cls(cfg, record, p, ranking.chosen)
        chosen = ranking.chosen
        if getattr(p.data, "kind", None) == "datamodule":
            final.lines = [f"Final model: not retrained: a DataModule of your own serves folds only (trial {chosen.number}'s config is in best_config.yaml)"]
            return final
        final.kept = None if again else _existing_final_model(tracker, record, chosen.number)
        if final.kept is not None:
            return final
        final.trial_cfg = best_config(cfg, chosen.params, original_number(chosen))
        final.seed, final.epochs = fold_seed(int(final.trial_cfg.seed), 0), final_epochs(cfg, chosen, len(p.folds))  # the seed of the chosen trial's fold 0
        log.info("final model: retraining trial %d on all development rows", chosen.number)
        if helper is not None and not p.own_code:
            try:
                # torch, which the fitted net comes back as, was imported on a thread during the trials (nnsearch.launch.run)
                final.started = helper.submit_on_data(fit_final_served, final.trial_cfg, p.test, seed=final.seed, epochs=final.epochs)
            except BrokenProcessPool as err:  # a fold process died (or the pool was closed): retrain here
                log.debug("final model: retraining here (%s)", err)
            except Exception as err:  # noqa: BLE001 - reported by finish, as a failed fit is
                final.started = err
        return final

    def finish(self, tracker: Any, metrics: dict[str, float]) -> list[str]:
        """Wait for the fit (or fit here) and log the model; the report's lines about it.
        ``metrics``: the parent run's, which get the ``test/*`` scores."""
        from nnsearch.study.final_model import log_final_model
        from nnsearch.study.record import FINAL_MODEL

        chosen, cfg = self.chosen, self.cfg
        if self.lines is not None:
            return self.lines
        if self.kept is not None:
            lines = [f"Final model: trial {chosen.number} is still the chosen one; keeping its final model (MLflow run {self.kept.info.run_id})"]
            tested = {k[len("test/"):]: v for k, v in self.kept.data.metrics.items() if k.startswith("test/")}
            return lines + _test_lines(chosen, tested, metrics, self.kept.data.params.get("rows.test", "?"))
        try:
            fit = self._fit()
            register = _setting(cfg, "final.register_name", None)
            run_id = log_final_model(tracker, fit, self.p.data, trial=chosen, params=chosen.params, register_name=register, log_model=bool(_setting(cfg, "final.log_model", True)))
        except Exception as err:  # noqa: BLE001 - the search's results stand without the final model
            log.warning("final model: retraining trial %d failed: %s", chosen.number, err)
            return [f"Final model: retraining failed ({err})"]
        self.record.set(FINAL_MODEL, {"trial": chosen.number, "run_id": run_id})
        lines = [f"Final model: trial {chosen.number} retrained on all {fit.n_train} development rows ({fit.epochs} epochs), MLflow run {run_id}"]
        lines += _test_lines(chosen, fit.test_metrics, metrics, fit.n_test)
        if register:
            lines.append(f"  registered as MLflow model '{register}'")
        return lines

    def _fit(self) -> Any:
        """The fit started in a fold process, or one here: without fold processes, for a model of the user's own
        code, or when a fold process died meanwhile."""
        from concurrent.futures.process import BrokenProcessPool

        from nnsearch.study.final_fit import fit_final

        if isinstance(self.started, Exception):
            raise self.started
        if self.started is not None:
            try:
                return self.started.result()
            except BrokenProcessPool as err:
                log.debug("final model: retraining here (%s)", err)
        return fit_final(self.trial_cfg, self.p.data, self.p.test, seed=self.seed, epochs=self.epochs)


def _existing_final_model(tracker: Any, record: Any, number: int) -> Any:
    """The FINISHED ``final-model`` run this study logged for trial ``number``, if it still exists."""
    from nnsearch.study.record import FINAL_MODEL

    earlier = record.get(FINAL_MODEL) or {}
    if earlier.get("trial") != number or not earlier.get("run_id"):
        return None
    return tracker.finished_run(earlier["run_id"])  # None if deleted, or in another store: retrain


def _test_lines(chosen: Any, tested: dict[str, float], metrics: dict[str, float], n_test: Any) -> list[str]:
    if not tested:
        return ["  no held-out test split (cv.test_size=0): only the CV estimate is available"]
    lines = [f"Held-out test split ({n_test} rows, never seen by any trial) beside the CV estimate:"]
    width = max([10] + [len(name) for name in tested])
    for name, value in tested.items():
        metrics[f"test/{name}"] = value
        cv, std = chosen.user_attrs.get(f"cv/{name}"), chosen.user_attrs.get(f"cv/{name}_std")
        beside = f"   (CV {cv:.4f} ± {std:.4f})" if cv is not None and std is not None else ""
        lines.append(f"  {name:<{width}} {value:.4f}{beside}")
    return lines
