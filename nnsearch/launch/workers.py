"""Running one study in several worker processes that share its storage.

Each worker is a full process (``python -m nnsearch.launch.worker CONFIG``) that asks the shared study
for its next trial as soon as it finishes one: no batch barrier, so no worker waits for the
slowest trial of a batch. Placement comes from existing engines: plain local processes, pinned to
GPUs with ``CUDA_VISIBLE_DEVICES``, submitit (SLURM job arrays; its local executor on one machine), or
Ray actors (:mod:`nnsearch.launch.ray_workers`: a local Ray instance or a cluster).

The launcher (this process) validated the config and opened the study and the MLflow parent run
before any worker starts. It watches the workers: a worker that dies mid-trial has its trial
failed and re-queued (``launch.max_retry``), and if every worker is gone before the study is
complete, fresh ones are started (``launch.max_restarts``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nnsearch.config.credentials import exported, redacted_yaml, worker_environment
from nnsearch.errors import NNSearchError
from nnsearch.storage import is_journal

log = logging.getLogger("nnsearch")
BACKENDS = ("local", "submitit", "ray")
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    gpu: str | None  # CUDA_VISIBLE_DEVICES of the worker: "3", or "0,1" for a trial that uses DDP on 2 GPUs
    threads: int
    urls: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # URLs with a password: the worker's config masks them

    def env(self) -> dict[str, str]:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads), "PYTHONUNBUFFERED": "1", **dict(self.urls)}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env


def _gpu_group(entry: Any) -> str:
    """``3`` -> ``"3"``; ``[0, 1]`` (a worker whose trials train with DDP on two GPUs) -> ``"0,1"``."""
    if isinstance(entry, (list, tuple, ListConfig)):
        return ",".join(str(int(g)) for g in entry)
    return str(int(entry))


def worker_plan(cfg: DictConfig) -> list[WorkerSpec]:
    """One worker per listed GPU or GPU group (times ``workers_per_gpu``), else ``workers`` CPU workers with the cores divided."""
    launch = cfg.launch
    urls = tuple(worker_environment(cfg).items())
    if launch.backend == "ray":  # Ray places the workers and assigns their GPUs; threads follow the CPUs each holds
        cpus = float(OmegaConf.select(cfg, "launch.ray.cpus_per_trial") or 1)
        threads = int(launch.threads_per_worker or max(1, int(cpus)))
        return [WorkerSpec(i, None, threads, urls) for i in range(int(launch.workers))]
    gpus = list(launch.gpus) if launch.get("gpus") else []
    if gpus:
        per_gpu = int(launch.workers_per_gpu)
        cpus = max(1, (os.cpu_count() or 1) // (len(gpus) * per_gpu))
        return [WorkerSpec(i * per_gpu + j, _gpu_group(g), cpus, urls) for i, g in enumerate(gpus) for j in range(per_gpu)]
    n = int(launch.workers)
    threads = int(launch.threads_per_worker or max(1, (os.cpu_count() or 1) // n))
    return [WorkerSpec(i, None, threads, urls) for i in range(n)]


def check_launch(cfg: DictConfig) -> None:
    """Settings that would make workers collide, rejected before anything starts."""
    launch = cfg.launch
    if launch.backend not in BACKENDS:
        raise NNSearchError(f"Unknown launch.backend '{launch.backend}'; choose one of {', '.join(BACKENDS)}.")
    if launch.backend == "ray":
        from nnsearch.launch.ray_workers import check_ray

        check_ray(cfg)
    url = str(cfg.study.storage or "")
    if url.startswith("sqlite:"):
        raise NNSearchError(
            "SQLite cannot take writes from several workers at once; use the default journal file "
            "(study.storage=null or a path), PostgreSQL/MySQL, or grpc://HOST:PORT."
        )
    if launch.get("gpus") and int(launch.workers_per_gpu) < 1:
        raise NNSearchError(f"launch.workers_per_gpu must be at least 1, got {launch.workers_per_gpu}.")
    if launch.get("gpus"):
        from nnsearch.fit.settings import world_size

        need, groups = world_size(cfg), [_gpu_group(g) for g in launch.gpus]
        short = [g for g in groups if len(g.split(",")) < need]
        if short:
            raise NNSearchError(
                f"trainer.devices={cfg.trainer.devices} needs {need} GPUs per worker, but launch.gpus gives {short[0]!r}; "
                f"list groups, e.g. launch.gpus=[[0,1],[2,3]]."
            )
    if launch.backend == "submitit" and is_journal(cfg.study.storage) and launch.submitit.cluster not in (None, "local", "debug"):
        log.warning("a journal file is shared by SLURM workers only if it sits on a file system every node mounts")


def write_worker_config(cfg: DictConfig, spec: WorkerSpec, folder: Path) -> Path:
    """The resolved config a worker runs, readable by its owner only.

    Passwords are masked in it: the worker gets those URLs in its environment
    (:func:`nnsearch.config.credentials.worker_environment`).
    """
    worker_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    worker_cfg.runtime.threads = spec.threads
    worker_cfg.launch.workers = 1
    worker_cfg.launch.worker_index = spec.index  # gives each worker its own sampler seed
    worker_cfg.launch.gpus = None
    if OmegaConf.select(worker_cfg, "report.progress") in ("auto", "live"):
        worker_cfg.report.progress = "plain"  # several workers cannot share one live status line
    if OmegaConf.select(worker_cfg, "cv.parallel") == "auto":
        worker_cfg.cv.parallel = 1  # the workers already fill the cores
    if cfg.study.storage is None or is_journal(cfg.study.storage):
        worker_cfg.study.storage = str(Path(cfg.study.storage or "optuna.journal").resolve())
    if OmegaConf.select(worker_cfg, "launch.checkpoint_dir"):  # the workers may start in another folder (submitit)
        worker_cfg.launch.checkpoint_dir = str(Path(str(worker_cfg.launch.checkpoint_dir)).expanduser().resolve())
    if str(worker_cfg.tracking.uri).startswith("sqlite:///") and not str(worker_cfg.tracking.uri).startswith("sqlite:////"):
        worker_cfg.tracking.uri = "sqlite:///" + str(Path(str(worker_cfg.tracking.uri)[len("sqlite:///") :]).resolve())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"worker_{spec.index}.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(redacted_yaml(worker_cfg))
    return path


def _output_folder() -> Path:
    from nnsearch.study.report import output_dir

    return output_dir() / "workers"


def launch_workers(cfg: DictConfig, study: Any, storage: Any, *, on_dead: Any = None) -> str:
    """Run the study on the configured workers until it is complete; returns why it stopped.

    ``on_dead(trial, reason)`` records a trial whose worker died (its MLflow run).
    """
    from nnsearch.study.trials import n_finished, reap_dead_trials

    def reap(dead_workers: set[str] | None = None) -> None:
        reap_dead_trials(study, storage, max_retry=int(cfg.launch.max_retry), dead_workers=dead_workers, on_dead=on_dead)

    reap()  # trials left RUNNING by an earlier run's dead workers
    specs = worker_plan(cfg)
    folder = _output_folder()
    configs = {spec.index: write_worker_config(cfg, spec, folder) for spec in specs}
    where = ", ".join(f"GPU {s.gpu}" if s.gpu is not None else f"{s.threads} thread(s)" for s in specs)
    if cfg.launch.backend == "ray":
        where = f"{float(cfg.launch.ray.cpus_per_trial):g} CPU(s) and {float(cfg.launch.ray.gpus_per_trial):g} GPU(s) each"
    log.info("launching %d %s worker(s): %s", len(specs), cfg.launch.backend, where)
    if cfg.launch.backend == "submitit":
        _run_submitit(cfg, specs, configs, folder)
    elif cfg.launch.backend == "ray":
        from nnsearch.launch.ray_workers import run_ray

        run_ray(cfg, study, specs, configs, reap)
    else:
        _run_local(cfg, study, specs, configs, reap)
    reap()
    done = n_finished(study)
    return "done" if done >= cfg.study.n_trials else f"workers stopped at {done}/{cfg.study.n_trials} trials"


def _start(spec: WorkerSpec, config: Path, lifeline: int) -> subprocess.Popen:
    """A worker process; ``lifeline`` is the read end of a pipe whose write end only this process
    holds, so the worker stops when this process is gone (``interrupt.stop_when_launcher_dies``)."""
    from nnsearch.runtime.interrupt import LAUNCHER_FD_ENV

    env = {**spec.env(), LAUNCHER_FD_ENV: str(lifeline)}
    return subprocess.Popen([sys.executable, "-m", "nnsearch.launch.worker", str(config)], env=env, pass_fds=(lifeline,))


def _run_local(cfg: DictConfig, study: Any, specs: list[WorkerSpec], configs: dict[int, Path], reap: Any) -> None:
    import socket

    from nnsearch.study.trials import n_finished

    host = socket.gethostname()
    lifeline, keep = os.pipe()  # ``keep`` is never written; it closes when this process exits, however it dies
    running: dict[int, tuple[WorkerSpec, subprocess.Popen]] = {}
    restarts = 0
    try:
        running = {spec.index: (spec, _start(spec, configs[spec.index], lifeline)) for spec in specs}
        while running:
            time.sleep(POLL_SECONDS)
            for index, (spec, proc) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[index]
                if code != 0:
                    log.warning("worker %d (pid %d) exited with %s", index, proc.pid, f"signal {-code}" if code < 0 else f"code {code}")
                    reap({f"{host}:{proc.pid}"})
            if not running and n_finished(study) < cfg.study.n_trials and restarts < int(cfg.launch.max_restarts):
                restarts += 1
                log.warning("all workers stopped before the study was complete; starting them again (%d/%d)", restarts, cfg.launch.max_restarts)
                running = {spec.index: (spec, _start(spec, configs[spec.index], lifeline)) for spec in specs}
    except KeyboardInterrupt:
        for _, proc in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        os.close(lifeline)
        os.close(keep)


def _run_submitit(cfg: DictConfig, specs: list[WorkerSpec], configs: dict[int, Path], folder: Path) -> None:
    """Submit the workers as one job array; ``launch.submitit.cluster=local`` runs them here."""
    try:
        import submitit
    except ImportError as err:
        raise NNSearchError(f"launch.backend=submitit needs the submitit package: {err}") from None
    from nnsearch.launch.worker import run

    options = OmegaConf.to_container(cfg.launch.submitit, resolve=True)
    cluster = options.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=str(folder / "submitit"), cluster=cluster)
    params = {k: v for k, v in options.items() if v is not None}
    if cluster == "local" or cluster == "debug":
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    executor.update_parameters(**params)
    with exported(worker_environment(cfg)):  # the jobs inherit it (sbatch exports the environment), no file holds it
        jobs = executor.map_array(run, [str(configs[s.index]) for s in specs])
    log.info("submitted %d job(s): %s", len(jobs), ", ".join(j.job_id for j in jobs))
    for job in jobs:
        try:
            code = job.result()
            if code:
                log.warning("job %s ended with code %s", job.job_id, code)
        except Exception as err:  # a failed or cancelled job: its trials are reaped afterwards
            log.warning("job %s failed: %s", job.job_id, str(err).splitlines()[0] if str(err) else type(err).__name__)


def serve_storage(cfg: DictConfig) -> None:
    """``command=storage_server``: Optuna's gRPC proxy in front of ``study.storage`` (an RDB URL).

    Workers then use ``study.storage=grpc://HOST:PORT`` and hold no database connection each.
    """
    from optuna.storages import run_grpc_proxy_server

    from nnsearch.config.credentials import redact
    from nnsearch.storage import open_storage

    url = cfg.study.storage
    if is_journal(url) or str(url).startswith("grpc://"):
        raise NNSearchError("command=storage_server serves an RDB storage: set study.storage=postgresql://... (or mysql, sqlite).")
    server = cfg.launch.get("grpc") or {}
    host, port = server.get("host", "127.0.0.1"), int(server.get("port", 13000))
    storage = open_storage(url)
    log.info("serving %s over gRPC on %s:%d (Ctrl-C stops)", redact(url), host, port)
    run_grpc_proxy_server(storage, host=host, port=port)
