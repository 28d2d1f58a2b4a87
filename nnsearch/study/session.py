"""A study's session: the config checked and turned into what trials need (:class:`Prepared`), the
Optuna study and its MLflow parent run opened, and trials run in this process.

Every check that can fail on user input runs in :func:`prepare`, before the study or any MLflow
run is created, so a bad command leaves nothing behind. Launchers (:mod:`nnsearch.launch.run`)
and workers build on these steps; commands on a finished study reuse :func:`prepare`.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.cv.settings import CVSettings
from nnsearch.errors import NNSearchError
from nnsearch.fit.settings import FitSettings
from nnsearch.study.settings import StudySettings
from nnsearch.tracking.settings import ReportSettings, TrackingSettings

log = logging.getLogger("nnsearch")


@dataclass(frozen=True)
class Prepared:
    """Everything a study derives from its config, checked once, before anything is written.

    ``data`` is the development set that cross-validation splits; ``test`` the held-out rows
    (``cv.test_size``) that no trial sees, or None.
    """

    data: Any
    test: Any
    objectives: Any  # nnsearch.study.objectives.Objectives
    space: Any  # nnsearch.study.search_space.SearchSpace
    folds: Any  # nnsearch.cv.FoldCache
    sampler: Any
    grid: dict[str, list] | None
    pruner: Any
    epoch_metrics: list[str]
    warm_start: list[dict[str, Any]]
    study: StudySettings
    cv: CVSettings
    fit: FitSettings
    tracking: TrackingSettings
    report: ReportSettings
    own_code: Any = None  # OwnCode: which parts are the user's code

    @property
    def metric(self) -> str:
        return self.objectives.metrics[0]

    @property
    def direction(self) -> str:
        return self.objectives.directions[0]


def prepare(cfg: DictConfig, *, smoke: bool = True) -> Prepared:
    """Everything derived from the config, checked; nothing written yet.

    ``data`` is the development set that cross-validation splits; ``test`` the held-out rows
    (``cv.test_size``) that no trial sees, or None. ``smoke=False`` leaves the smoke test to the
    caller (:func:`smoke_test`), which runs it in a fold process.
    """
    from nnsearch.config.building import build, build_pruner, build_sampler
    from nnsearch.cv import FoldCache, holdout_split, make_splits
    from nnsearch.study.objectives import resolve_objectives
    from nnsearch.study.preflight import check_sampler, check_settings, check_stores
    from nnsearch.study.search_space import SearchSpace
    from nnsearch.fit.trainer import quiet_lightning

    if cfg.runtime.quiet:
        quiet_lightning()
    optuna_logging_to_warnings()
    # each room's settings, checked now: a bad value fails here, in one line, not in every trial
    study, cv = StudySettings.from_config(cfg.study), CVSettings.from_config(cfg.cv)
    fit, tracking, report = FitSettings.from_config(cfg.trainer), TrackingSettings.from_config(cfg.tracking), ReportSettings.from_config(cfg.report)
    check_settings(cfg)
    check_stores(cfg)
    from nnsearch.cv.pool import parallel_folds

    parallel_folds(cfg, 2, per_fold_pruning=False)  # a bad cv.parallel fails here too
    data = build("data", cfg.data)
    own_code = _own_code(cfg, data)
    _check_transfer(cfg, data, own_code)
    objectives = resolve_objectives(cfg.study, data.task, logged=own_code.module, targets=getattr(data, "targets", ()))
    if own_code.module:  # a fold scored at its best epoch needs the direction the study resolved
        cfg.study.direction = objectives.directions if objectives.multi else objectives.directions[0]
    if own_code.data and objectives.model_metrics:
        raise NNSearchError(f"{', '.join(sorted(objectives.model_metrics))} measure nnsearch's networks on in-memory data; they do not apply to data={own_code.data}.")
    space = SearchSpace.from_config(cfg.get("search_space"), cfg)
    if _one_trial_without_a_space(cfg, space):
        study = StudySettings.from_config(cfg.study)
    warm_start = _warm_start(cfg.study.get("enqueue"), space)
    data, test = holdout_split(data, test_size=cv.test_size, seed=cv.seed, stratified=cv.stratified)
    splits = make_splits(data, folds=cv.folds, seed=cv.seed, shuffle=cv.shuffle, stratified=cv.stratified)
    folds = FoldCache(data, splits)
    if own_code.data:
        data.prepare(len(splits))
    grid = space.grid() if "GridSampler" in str(cfg.sampler.get("_target_", "")) else None
    sampler = build_sampler(cfg, grid)
    check_sampler(sampler, space)
    pruner = build_pruner(cfg)
    _check_pruner(pruner, objectives)
    cv_metrics = [m for m in objectives.metrics if m not in objectives.model_metrics]
    epoch_metrics = list(tracking.epoch_metrics or cv_metrics)  # each objective's curve (both targets of a multi-task study)
    prepared = Prepared(data=data, test=test, objectives=objectives, space=space, folds=folds, sampler=sampler, grid=grid, pruner=pruner,
                        epoch_metrics=epoch_metrics, warm_start=warm_start, study=study, cv=cv, fit=fit, tracking=tracking, report=report,
                        own_code=own_code)
    if smoke:
        smoke_test(cfg, prepared)
    return prepared


def _torch_threads(cfg: DictConfig) -> None:
    """``runtime.threads`` for this process' torch, set only where this process trains: beside fold
    processes it never imports torch before the final model is logged (about 1.7 s of CPU at start)."""
    if cfg.runtime.threads:
        import torch

        torch.set_num_threads(int(cfg.runtime.threads))


def smoke_test(cfg: DictConfig, p: Prepared, pool: Any = None) -> None:
    """Build every setting the study will use and train it one step on fold 0, so that what would
    fail every trial fails once, before the study exists (see :mod:`nnsearch.study.smoke`).

    With ``pool`` (the study's fold processes) it runs in one of them, which has Lightning imported
    already, so that this process never imports it. The user's own module or data is smoke-tested
    here, with a real Trainer.
    """
    if p.own_code or pool is None:
        _torch_threads(cfg)  # this process trains from here on (the smoke test, the folds in turn, the final fit)
    if p.own_code:
        from nnsearch.study.smoke import smoke_own_code

        smoke_own_code(cfg, p.data, p.folds.get(0), p.objectives.metrics)
    elif pool is None:
        from nnsearch.study.smoke import smoke_test as smoke

        smoke(cfg, p.data, p.folds.get(0), p.space)
    else:
        pool.smoke_test(cfg, p.space).result()  # a failure is the fold process' NNSearchError, raised here


def _check_transfer(cfg: DictConfig, data: Any, own_code: Any) -> None:
    """``model.init_from``/``model.freeze`` and ``distill.*`` before any trial: the teacher must load and predict the
    data's classes. (A source that matches no layer fails in the smoke test, which builds the model.)"""
    from nnsearch.fit.settings import world_size
    from nnsearch.models.distill import DistillSettings, load_teacher

    distill = DistillSettings.from_config(cfg.get("distill"))
    transfer = bool(OmegaConf.select(cfg, "model.init_from")) or OmegaConf.select(cfg, "model.freeze") not in (None, 0)
    if own_code and (transfer or distill.enabled):
        key = "distill.teacher" if distill.enabled else "model.init_from"
        raise NNSearchError(f"{key} applies to nnsearch's model families on in-memory data, not to your own module or data; "
                            "load weights or a teacher in your own LightningModule.")
    if not distill.enabled:
        return
    if world_size(cfg) > 1:
        raise NNSearchError("distill.teacher does not yet train on several devices (trainer.devices > 1); use one device per trial.")
    load_teacher(str(distill.teacher), OmegaConf.select(cfg, "tracking.uri")).check(data)


@dataclass(frozen=True)
class OwnCode:
    """Which parts of a study are the user's own code: ``module`` (model=lightning) and ``data`` ('dataset' or 'datamodule')."""

    module: bool
    data: str | None

    def __bool__(self) -> bool:
        return self.module or self.data is not None


def _own_code(cfg: DictConfig, data: Any) -> OwnCode:
    from nnsearch.models.user import is_user_module

    own = OwnCode(is_user_module(cfg.model), getattr(data, "kind", None))
    if own.data == "datamodule" and not own.module:
        raise NNSearchError("data=datamodule trains a LightningModule of your own: use model=lightning with model.module._target_=...")
    return own


def _one_trial_without_a_space(cfg: DictConfig, space: Any) -> bool:
    """Without a search space every trial trains the same configuration (only the seed differs): run one."""
    if len(space) or cfg.study.n_trials == 1:
        return False
    log.info(
        "search_space is empty, so every trial would train the same configuration: running 1 trial instead of "
        "study.n_trials=%d (command=seeds measures how much the score varies with the seed)",
        cfg.study.n_trials,
    )
    cfg.study.n_trials = 1
    return True


def _check_pruner(pruner: Any, objectives: Any) -> None:
    """Optuna's pruners compare one intermediate value: they cannot serve a multi-objective study."""
    import optuna

    if objectives.multi and not isinstance(pruner, optuna.pruners.NopPruner):
        raise NNSearchError(
            f"pruner={type(pruner).__name__} needs a single objective, but study.metric has {len(objectives.metrics)} "
            f"({', '.join(objectives.metrics)}); use pruner=none for a multi-objective study."
        )
    if objectives.metrics[0] in objectives.model_metrics and not isinstance(pruner, optuna.pruners.NopPruner):
        raise NNSearchError(f"pruner needs a metric computed per epoch, and '{objectives.metrics[0]}' is not; use pruner=none.")


def _warm_start(entries: Any, space: Any) -> list[dict[str, Any]]:
    """``study.enqueue``: configurations to evaluate first, each checked against the search space."""
    if not entries:
        return []
    by_path = {p.path: p.distribution for p in space.parameters}
    out = []
    for i, entry in enumerate(OmegaConf.to_container(entries, resolve=True)):
        if not isinstance(entry, dict):
            raise NNSearchError(f"study.enqueue[{i}] must be a mapping of search-space paths to values, got {entry!r}.")
        for path, value in entry.items():
            if path not in by_path:
                raise NNSearchError(f"study.enqueue[{i}]: '{path}' is not in search_space ({', '.join(by_path) or 'empty'}).")
            dist = by_path[path]
            if not _inside(dist, value):
                raise NNSearchError(f"study.enqueue[{i}]: {path}={value!r} is outside its search space {dist}.")
        out.append(entry)
    return out


def _inside(dist: Any, value: Any) -> bool:
    """Whether ``value`` is one the distribution can suggest (bounds, step, choices), from its public fields."""
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value in dist.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(dist, optuna.distributions.IntDistribution) and value != int(value):
        return False
    if not dist.low <= value <= dist.high:
        return False
    step = getattr(dist, "step", None)
    if step is None:
        return True
    offset = (value - dist.low) / step
    return abs(offset - round(offset)) < 1e-8


def optuna_logging_to_warnings() -> None:
    """nnsearch prints its own line per trial; Optuna's and MLflow's INFO lines would repeat it.

    Matplotlib's INFO lines (categorical axes of numeric-looking choices in the study plots) say
    nothing a user can act on.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("optuna.study._optimize").addFilter(_no_traceback_for_failed_trials)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def _no_traceback_for_failed_trials(record: logging.LogRecord) -> bool:
    """A trial that fails for a stated reason (NaN loss, invalid sampled combination, Ctrl-C) needs no traceback."""
    from nnsearch.errors import TrialFailed, TrialSkipped

    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, TrialSkipped):
        return False  # a skipped trial is bookkeeping between workers, not a failure to report
    if record.getMessage().endswith("failed with value None."):
        return False  # repeats the line before it, which states the reason
    if isinstance(error, (TrialFailed, KeyboardInterrupt)):
        record.exc_info, record.exc_text = None, None
    return True


def model_choices(space: Any) -> list[str]:
    """The model families a searched ``model`` choice may pick (empty when the family is fixed)."""
    return [str(c) for p in space.parameters if p.path == "model" for c in p.distribution.choices]


def open_study_and_parent(cfg: DictConfig, p: Prepared, *, worker: bool = False, worker_index: int = 0, workers: int = 1) -> tuple[Any, Any, Any]:
    """Open (or resume) the Optuna study and its MLflow parent run; returns the study, the
    tracker and the study's record (:class:`nnsearch.study.record.StudyRecord`, its storage inside).

    A resumed study must have the identity settings and data its trials ran with
    (:mod:`nnsearch.study.identity`). The process that created the study opens the MLflow parent run;
    a worker, or another process joining the study, attaches to the parent run recorded on the
    study, without changing its status. ``worker_index`` and ``workers`` come from the launcher.
    """
    from nnsearch.study import identity
    from nnsearch.study.objective import type_name
    from nnsearch.config.credentials import redact
    from nnsearch.storage import storage_from_config
    from nnsearch.study.trials import enqueue, n_finished, open_study
    from nnsearch.study.record import PARENT_RUN, StudyRecord
    from nnsearch.tracking.runs import Tracker

    where = redact(p.study.storage) if p.study.storage else "optuna.journal"
    storage = storage_from_config(cfg)
    study, created = open_study(p.study.name, storage, directions=p.objectives.directions, sampler=p.sampler, pruner=p.pruner)
    record = StudyRecord(study, storage)
    arrays = p.data.fingerprint() if hasattr(p.data, "fingerprint") else (p.data.X, p.data.y)
    digest = None if worker else identity.data_digest(*arrays)  # the launcher checked and stored it
    if not worker:
        identity.check_resume(record, cfg, digest, where=where)
    configured_seed = cfg.sampler.get("seed")
    _seed_this_process(cfg, p, study, created=created, worker_index=worker_index)
    data = p.data
    tracker = Tracker(
        p.tracking.absolute_uri,
        p.tracking.experiment,
        trial_plots=p.tracking.trial_plots,
        task=data.task.value if data.task is not None and data.task.is_supervised else None,
        classes=data.classes,
        targets=getattr(data, "targets", ()),  # multi-task: each target's figures
        background=True,  # a trial's figures are drawn while the next one trains
    )
    if worker:
        tracker.parent_run_id = record.get(PARENT_RUN)
        return study, tracker, record
    from nnsearch.study.report import remember_config

    remember_config(record, cfg, p.objectives.metrics)  # commands then work on an interrupted study too
    identity.remember_data(record, digest)
    queued = enqueue(study, p.warm_start)
    if queued:
        log.info("warm start: %d configuration(s) queued to run first", queued)
    log.info("study '%s' on %s: %d/%d trials finished; %s", study.study_name, where, n_finished(study), p.study.n_trials, p.data.describe())
    params = {
        "study.metric": ",".join(p.objectives.metrics),
        "study.direction": ",".join(p.objectives.directions),
        "study.constraints": OmegaConf.to_container(cfg.study.constraints) if cfg.study.get("constraints") else "none",
        "sampler": type_name(cfg.sampler),
        "sampler.seed": configured_seed,
        "pruner": type_name(cfg.pruner),
        "cv.folds": p.cv.folds,
        "cv.seed": p.cv.seed,
        "cv.test_size": p.cv.test_size,
        "seed": cfg.seed,
        "data": p.data.name,
        "model": ", ".join(model_choices(p.space)) or type_name(cfg.model.get("module") or cfg.model.get("net") or cfg.model),
        "trainer.max_epochs": p.fit.max_epochs,
        "search_space": ", ".join(par.path for par in p.space.parameters) or "(empty)",
    }
    tags = {"optuna.study_name": study.study_name, "study.n_trials": p.study.n_trials, "storage": where, "launch.workers": workers}
    if not created:  # a process starting the same new study at the same moment opens its parent run
        _wait_for_parent_run(record)
    run_id, resumed = tracker.open_parent(study.study_name, record.get(PARENT_RUN), params, tags)
    record.set(PARENT_RUN, run_id)
    objs = p.objectives
    keys = [m if m in objs.model_metrics else f"cv/{m}" for m in objs.metrics]  # as each trial run logs them
    tracker.set_trials_view(keys, list(objs.directions), [par.path for par in p.space.parameters])
    if resumed:
        log.info("resuming: reattached to MLflow parent run %s", tracker.parent_run_id)
    return study, tracker, record


def _wait_for_parent_run(record: Any, *, timeout: float = 30.0) -> None:
    """Two processes starting one new study together: the one that created it opens the MLflow
    parent run; the other waits for its id to appear on the study (or, if the creator died before
    that, opens one itself after ``timeout``)."""
    from nnsearch.study.record import PARENT_RUN

    if record.get(PARENT_RUN) or record.study.get_trials(deepcopy=False):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.get(PARENT_RUN):
            return
        time.sleep(0.2)


def _seed_this_process(cfg: DictConfig, p: Prepared, study: Any, *, created: bool, worker_index: int) -> None:
    """Give this process's sampler its own seed (see ``process_seed``); ``cfg.sampler.seed`` then says which."""
    import os
    import socket

    from nnsearch.config.building import build_sampler
    from nnsearch.study.objective import type_name
    from nnsearch.study.trials import SHARED_SEED_SAMPLERS, process_seed

    seed = cfg.sampler.get("seed")
    if seed is None or type_name(cfg.sampler) in SHARED_SEED_SAMPLERS:
        return
    trials_before = len(study.get_trials(deepcopy=False))
    own = process_seed(int(seed), created=created, trials_before=trials_before, worker_index=worker_index, host=socket.gethostname(), pid=os.getpid())
    if own != seed:
        study.sampler = build_sampler(cfg, p.grid, seed=own)
        cfg.sampler.seed = own
        log.info("sampler seed %d (derived from sampler.seed=%d: %d trials already in the study, worker %d)", own, seed, trials_before, worker_index)


def start_fold_pool(cfg: DictConfig, p: Prepared) -> Any:
    """The fold processes of ``cv.parallel``, or None; started as early as possible, since they take seconds to boot."""
    from nnsearch.cv.pool import FoldPool
    from nnsearch.study.objective import type_name

    return FoldPool.from_config(cfg, p.data, p.folds.splits, per_fold_pruning=type_name(cfg.pruner) == "WilcoxonPruner")


def record_dead_trial(tracker: Any) -> Any:
    """``on_dead`` for :func:`nnsearch.study.trials.reap_dead_trials`: the dead trial's MLflow run, FAILED with its reason."""

    def on_dead(trial: Any, reason: str) -> None:
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        try:
            tracker.log_trial(number=trial.number, state="FAIL", params=trial.params, folds=[], cv={}, tags={"reason": reason},
                              start_ms=int(started * 1000))
        except Exception as err:  # noqa: BLE001 - the study's own record stands without it
            log.warning("MLflow run of dead trial %d could not be written: %s", trial.number, err)

    return on_dead


def run_trials_here(
    cfg: DictConfig, p: Prepared, study: Any, tracker: Any, record: Any, interruption: Any, *, pool: Any = None, started: float | None = None,
    keep_pool: bool = False, max_retry: int = 2, checkpoint_dir: str | None = None,
) -> str:
    """Run trials in this process until the study (shared with any other worker) is complete.

    ``pool``: fold processes started by the caller (closed here unless ``keep_pool``: the caller
    then writes the report, which draws the study plots there and waits for the last trials'
    artifacts, and closes it); else they start here if needed.
    Trials left RUNNING by a dead process are failed and queued again first, each at most ``max_retry`` times;
    ``checkpoint_dir`` (``launch.checkpoint_dir``) is where their folds' checkpoints are kept.
    """
    from nnsearch.study.objective import Objective
    from nnsearch.tracking.progress import Progress
    from nnsearch.study.trials import n_finished, reap_dead_trials, run_trials

    objs = p.objectives

    def reap() -> None:
        reap_dead_trials(study, record.storage, max_retry=max_retry, on_dead=record_dead_trial(tracker))

    progress = Progress(
        mode=p.report.progress, total=p.study.n_trials, done=n_finished(study), metrics=objs.metrics, directions=objs.directions, folds=len(p.folds),
        epochs=p.fit.max_epochs, trials=study.get_trials(deepcopy=False), started=started,
    )
    if pool is None and n_finished(study) < p.study.n_trials:
        pool = start_fold_pool(cfg, p)
        if pool is not None:
            pool.announce()
    objective = Objective(
        cfg, p.data, p.space, p.folds, tracker, objectives=objs, epoch_metrics=p.epoch_metrics, interruption=interruption, progress=progress,
        fold_pool=pool, max_retry=max_retry, checkpoint_dir=checkpoint_dir,
    )
    ended = False
    try:
        reason = run_trials(
            study,
            objective,
            n_trials=p.study.n_trials,
            timeout=p.study.timeout,
            max_failed_trials=p.study.max_failed_trials,
            interruption=interruption,
            reap=reap,
        )
        ended = True
        return reason
    finally:
        progress.close()
        if not (keep_pool and ended):  # the report waits for them itself, once it has started the study plots
            tracker.flush()  # the last trials' artifacts, before the worker's exit or an interrupted study's end
        if pool is not None and not keep_pool:
            pool.close()
