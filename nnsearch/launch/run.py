"""Running a study to its end: here, or in worker processes that share it; then the report.

:func:`run_study` is the whole main job as ``train.py`` is in lightning-hydra-template: prepare,
open, run trials (here or through :mod:`nnsearch.launch.workers`), finish. Ctrl-C or SIGTERM at
any point after the study opened stops it cleanly.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import StudyFailed
from nnsearch.launch.settings import LaunchSettings

if TYPE_CHECKING:
    from nnsearch.study.session import Prepared

log = logging.getLogger("nnsearch")


def run_study(cfg: DictConfig, *, started: float | None = None) -> Any:
    """Validate, run the study to ``study.n_trials`` finished trials, summarize; returns the study.

    With ``launch.workers`` > 1 (or ``launch.gpus``, or ``launch.backend=submitit`` or ``ray``) the trials
    run in worker processes that share the study; this process supervises them. Ctrl-C or
    SIGTERM, at any point after the study opened (trials, report, final model), stops it cleanly:
    the running trial is recorded as failed, the parent run KILLED.
    """
    from nnsearch.cv.settings import side_by_side_by_settings
    from nnsearch.runtime import fast_exit, fork_server
    from nnsearch.study.preflight import check_data_early
    from nnsearch.tracking.store import check_reachable

    started = time.time() if started is None else started  # the CLI passes its launch time
    check_reachable(cfg.tracking.uri)  # an unreachable server fails now, in seconds, not after minutes of retries
    check_data_early(cfg)  # a mistyped CSV column fails before torch and Lightning are imported
    launch = LaunchSettings.from_config(cfg.get("launch"))
    distributed = launch.distributed
    if distributed:
        from nnsearch.launch.workers import check_launch

        check_launch(cfg)  # settings that would make workers collide (or a backend not installed) fail before the smoke test
    if not distributed and side_by_side_by_settings(cfg):
        fork_server.boot()  # (the command booted it already) its imports on another core while this process reads the data and imports MLflow
    from nnsearch.runtime.interrupt import Interruption
    from nnsearch.study.session import open_study_and_parent, prepare, smoke_test, start_fold_pool
    from nnsearch.tracking.store import StoreAhead, import_mlflow

    p = prepare(cfg, smoke=False)
    if launch.backend == "ray":
        from nnsearch.launch.ray_workers import connect

        connect(cfg)  # the cluster is joined (and a storage its nodes cannot share refused) before the study opens
    # while the fork server imports Lightning: MLflow imported here, a new store's tables built under a private name
    import_mlflow()
    store = StoreAhead.build(p.tracking.absolute_uri)
    pool = None
    try:
        pool = None if distributed else start_fold_pool(cfg, p)  # its processes are forked once the server is ready
        smoke_test(cfg, p, pool)  # in a fold process when there are some: this process never imports Lightning
    except BaseException:
        if store is not None:
            store.drop()
        if pool is not None:
            pool.close()
        raise
    if store is not None:
        store.place()
    if pool is not None:
        pool.announce()
    try:
        study, tracker, record = open_study_and_parent(cfg, p, workers=launch.n_workers)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    fast_exit.freeze_startup()  # the imports' objects stay out of the exit scan and of every collection
    if pool is not None and not p.own_code and OmegaConf.select(cfg, "final.retrain", default=True):
        from nnsearch.runtime.background_import import import_in_background

        import_in_background("torch")  # for the final model, which a fold process retrains after the trials
    interruption = Interruption()
    try:
        return _run_and_finish(cfg, p, study, tracker, record, interruption, pool=pool, distributed=distributed, started=started, launch=launch)
    finally:
        if pool is not None:
            pool.close()  # the study plots were drawn there (see nnsearch.study.report.finish)


def _run_and_finish(cfg: DictConfig, p: Prepared, study: Any, tracker: Any, record: Any, interruption: Any, *, pool: Any, distributed: bool, started: float,
                    launch: LaunchSettings) -> Any:
    """The trials, then the report; closes the parent run as interrupted or failed when they stop."""
    from nnsearch.study.report import finish
    from nnsearch.study.session import record_dead_trial, run_trials_here
    from nnsearch.study.trials import n_finished

    try:
        with interruption:
            if distributed:
                from nnsearch.launch.workers import launch_workers

                with interruption.interruptible():
                    reason = launch_workers(cfg, study, record.storage, on_dead=record_dead_trial(tracker))
            else:
                reason = run_trials_here(cfg, p, study, tracker, record, interruption, pool=pool, started=started, keep_pool=True,
                                         max_retry=launch.max_retry, checkpoint_dir=launch.checkpoint_dir)
            with interruption.interruptible():  # the report and the final model take seconds: a stop is honoured at once
                finish(cfg, record, tracker, p, reason=reason, seconds=time.time() - started, helper=pool)
    except KeyboardInterrupt:
        tracker.close_parent("KILLED", tags={"state": "interrupted"})
        log.info("interrupted after %d/%d finished trials", n_finished(study), p.study.n_trials)
        raise KeyboardInterrupt(interruption.signal or signal.SIGINT) from None
    except StudyFailed:
        raise  # finish() closed the parent run with the reason
    except BaseException:
        tracker.close_parent("FAILED", tags={"state": "failed"})
        raise
    return study


def run_worker(cfg: DictConfig) -> str:
    """One worker of a launched study: the study and its parent run exist already."""
    from nnsearch.runtime.interrupt import Interruption, stop_when_launcher_dies
    from nnsearch.study.session import open_study_and_parent, prepare, run_trials_here

    stop_when_launcher_dies()
    launch = LaunchSettings.from_config(cfg.get("launch"))
    p = prepare(cfg)
    study, tracker, record = open_study_and_parent(cfg, p, worker=True, worker_index=launch.worker_index, workers=launch.n_workers)
    with Interruption() as interruption:
        return run_trials_here(cfg, p, study, tracker, record, interruption, max_retry=launch.max_retry, checkpoint_dir=launch.checkpoint_dir)
