"""The study's workers as Ray actors (``launch.backend=ray``): a local Ray instance, a KubeRay or cloud cluster.

Ray places the workers (``launch.workers`` of them, each holding ``launch.ray.cpus_per_trial`` CPUs
and ``launch.ray.gpus_per_trial`` GPUs, fractions packing several on one GPU) and ships the folder
the study runs from to every node (Ray's ``working_dir`` runtime environment), so the user's own
packages import there. What a worker does is unchanged: each actor starts the same worker process
as the other backends (``python -m nnsearch.launch.worker``'s ``run``, through :func:`main` here),
pinned to the GPUs Ray assigned it, and the study is coordinated through its Optuna storage as
before: samplers, pruners, exact totals, the MLflow study → trial runs.

Supervision mirrors the local backend (:mod:`nnsearch.launch.workers`): the launcher polls each
actor; a worker that exits abnormally, or whose actor dies (killed, out of memory, a lost node),
has its running trial failed and queued again (``launch.max_retry``), and all workers are started
again if all stop before the study is complete (``launch.max_restarts``). Ray's public API only
(``ray.init``, ``ray.remote``, ``ray.wait``/``ray.get``, ``ray.kill``, ``ray.nodes``).

Why a process inside the actor rather than the worker running in the actor's own process: it is
exactly the worker of the other backends (fold processes, DDP ranks and signals behave as there,
and nothing of a trial outlives it in a reused Ray process), and the actor stays responsive to the
launcher's polls while the worker trains.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nnsearch.errors import NNSearchError
from nnsearch.launch.settings import RaySettings
from nnsearch.storage import is_journal

log = logging.getLogger("nnsearch")
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 30
ACTOR_FD_ENV = "NNSEARCH_RAY_ACTOR_FD"  # the worker's read end of a pipe whose write end its actor holds
INSTALL = 'launch.backend=ray needs Ray, which is not installed here: pip install "nnsearch[ray]" (in a checkout: pip install -e ".[ray]").'
# never shipped to the nodes: the study's own state and run folders are not code
WORKING_DIR_EXCLUDES = ["/.git/", "/.venv/", "__pycache__/", "/outputs/", "/multirun/", "/mlruns/", "/mlartifacts/", "*.journal", "*.journal.lock"]


def import_ray() -> Any:
    """The ``ray`` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise NNSearchError(INSTALL) from None
    return ray


def check_ray(cfg: DictConfig) -> None:
    """Before anything runs: Ray is installed and ``launch.ray`` is valid (the cluster is asked later, in :func:`connect`)."""
    settings = RaySettings.from_config(cfg.launch.get("ray"))
    devices = OmegaConf.select(cfg, "trainer.devices")
    need = len(devices) if isinstance(devices, (list, ListConfig)) else devices if isinstance(devices, int) and not isinstance(devices, bool) else 1
    if settings.gpus_per_trial and need > settings.gpus_per_trial:
        raise NNSearchError(
            f"trainer.devices={devices} trains each trial on {need} GPUs (DDP), but launch.ray.gpus_per_trial={settings.gpus_per_trial:g} "
            f"gives a worker fewer; set launch.ray.gpus_per_trial={need}."
        )
    import_ray()


def _is_local_file(url: Any) -> bool:
    """A store that lives in a file of this machine: a journal path, ``sqlite:``, ``file:`` or a bare path."""
    text = str(url or "")
    return is_journal(url) or text.startswith(("sqlite:", "file:"))


def shared_storage_problem(cfg: DictConfig, hosts: list[str | None]) -> str | None:
    """Why the study cannot run on Ray nodes on ``hosts`` (one per alive node), or None.

    A journal file or SQLite is a file of this machine: workers on another machine would each
    write a study (or an MLflow store) of their own. Nodes on this machine (a local Ray instance)
    share it as local workers do; a node whose host is unknown is taken for another machine.
    """
    here = socket.gethostname()
    elsewhere = [h for h in hosts if h != here]
    if not elsewhere:
        return None
    local = [key for key, url in (("study.storage", cfg.study.storage), ("tracking.uri", cfg.tracking.uri)) if _is_local_file(url)]
    if not local:
        return None
    return (
        f"launch.backend=ray: {len(elsewhere)} of the Ray cluster's {len(hosts)} node(s) run on other machines than this one, but "
        f"{' and '.join(local)} {'are files' if len(local) > 1 else 'is a file'} of this machine that they cannot share; use "
        "study.storage=postgresql://... (or mysql+pymysql://..., or grpc://HOST:PORT of command=storage_server) and "
        "tracking.uri=http://MLFLOW_SERVER:5000 (or the database's URL)."
    )


def _runtime_env(cfg: DictConfig, settings: RaySettings) -> dict[str, Any] | None:
    """Ray's runtime environment of the workers: the study's folder as their working directory."""
    if not settings.working_dir:
        return None
    root = Path(settings.working_dir).resolve()
    if not root.is_dir():
        raise NNSearchError(f"launch.ray.working_dir={settings.working_dir}: no such folder.")
    excludes = list(WORKING_DIR_EXCLUDES)
    for url in (cfg.study.storage, cfg.tracking.uri):  # the study's own files, wherever below the folder they are
        text = str(url or "optuna.journal")
        path = Path(text.removeprefix("sqlite:///")) if text.startswith("sqlite:///") or is_journal(url) else None
        if path is not None:
            try:
                excludes.append("/" + Path(path).resolve().relative_to(root).as_posix())
            except ValueError:
                pass  # outside the working directory: not shipped anyway
    return {"working_dir": str(root), "excludes": excludes}


def connect(cfg: DictConfig) -> Any:
    """Join the configured Ray cluster (or start a local instance); refuse a study whose storage the
    cluster's nodes cannot share. Before the study or any MLflow run is created."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # the workers' per-trial lines reach the terminal, not "[repeated 2x]"
    ray = import_ray()
    settings = RaySettings.from_config(cfg.launch.get("ray"))
    address = settings.address or "local"  # "local": a new instance, even where RAY_ADDRESS or a running head would be found
    options: dict[str, Any] = {"include_dashboard": False} if address == "local" else {}
    runtime_env = _runtime_env(cfg, settings)
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(address=address, runtime_env=runtime_env, **options)
    except Exception as err:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError, ...: one line either way
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = "start a local Ray instance" if address == "local" else f"connect to Ray at launch.ray.address={address}"
        raise NNSearchError(f"Cannot {where}: {first}") from None
    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = len(alive)
    # a local instance runs on this machine by construction; a cluster's nodes are told apart by host name
    problem = None if address == "local" else shared_storage_problem(cfg, [n.get("NodeManagerHostname") for n in alive])
    if problem:
        ray.shutdown()
        raise NNSearchError(problem)
    resources = ray.cluster_resources()
    short = [f"{need:g} {name}" for name, need in (("CPU", settings.cpus_per_trial), ("GPU", settings.gpus_per_trial))
             if need and resources.get(name, 0) < need]
    if short:
        log.warning("the Ray cluster has less than one trial's %s now; the workers wait until it has (an autoscaler may add nodes)", " and ".join(short))
    log.info("Ray: %s, %d node(s), %g CPU(s), %g GPU(s)", "a local instance" if address == "local" else address, nodes,
             resources.get("CPU", 0), resources.get("GPU", 0))
    return ray


class RayWorker:
    """A Ray actor holding one worker's resources; it runs the worker as a process of its own.

    The worker process (:func:`main`) holds the read end of a pipe whose write end only this actor
    holds: when the actor's process dies however it dies (killed, out of memory, its node lost, the
    launcher gone), Ray frees its CPUs and GPUs and may place another worker there, so the worker
    process dies at once too, leaving its trial RUNNING for the launcher to fail and re-queue, as a
    killed local worker's.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._folder: str | None = None
        self._lifeline: int | None = None

    def start(self, config_yaml: str, env: dict[str, str]) -> str:
        """Start the worker on ``config_yaml`` (passwords masked; the real URLs in ``env``); returns its ``host:pid``."""
        import ray

        self._folder = tempfile.mkdtemp(prefix="nnsearch-worker-")  # readable by this user only
        path = os.path.join(self._folder, "worker.yaml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(config_yaml)
        read, self._lifeline = os.pipe()
        child_env = {**os.environ, **env, ACTOR_FD_ENV: str(read)}
        gpus = ray.get_gpu_ids()
        if gpus:
            child_env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        self._proc = subprocess.Popen([sys.executable, "-m", "nnsearch.launch.ray_workers", path], env=child_env, pass_fds=(read,))
        os.close(read)
        return f"{socket.gethostname()}:{self._proc.pid}"

    def poll(self) -> int | None:
        """The worker's exit code (negative: the signal that ended it), or None while it runs."""
        code = self._proc.poll() if self._proc is not None else None
        if code is not None and self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        return code

    def interrupt(self) -> None:
        """Stop the worker as Ctrl-C stops one: its running trial is recorded as failed, then it exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)


@dataclass
class _Placed:
    """A worker's actor, the reference to its start, and (once started) its worker process's ``host:pid``."""

    index: int
    actor: Any
    started: Any
    owner: str | None = None


def _worker_env(spec: Any) -> dict[str, str]:
    """What a worker's process needs from the launcher: its thread counts and the URLs its config masks
    (never the launcher's whole environment: the nodes have their own)."""
    threads = str(spec.threads)
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1", **dict(spec.urls)}


def run_ray(cfg: DictConfig, study: Any, specs: list[Any], configs: dict[int, Path], reap: Any) -> None:
    """Run the workers as Ray actors until each has stopped; restart them all if all stop early."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    from nnsearch.study.trials import n_finished

    settings = RaySettings.from_config(cfg.launch.get("ray"))
    actor_class = ray.remote(RayWorker).options(num_cpus=settings.cpus_per_trial, num_gpus=settings.gpus_per_trial, max_restarts=0, max_task_retries=0)
    texts = {index: path.read_text() for index, path in configs.items()}
    placed: list[_Placed] = []

    def place(spec: Any) -> _Placed:
        actor = actor_class.remote()
        worker = _Placed(spec.index, actor, actor.start.remote(texts[spec.index], _worker_env(spec)))
        placed.append(worker)
        return worker

    def exit_code(worker: _Placed) -> int | str | None:
        """None while the worker runs (or waits for a place on the cluster); else its exit code, or why it is gone."""
        try:
            if worker.owner is None:
                if not ray.wait([worker.started], timeout=0)[0]:
                    return None
                worker.owner = ray.get(worker.started)
                log.info("worker %d started on Ray as %s", worker.index, worker.owner)
            return ray.get(worker.actor.poll.remote(), timeout=60)
        except GetTimeoutError:
            return None  # a busy node; asked again at the next poll
        except RayActorError as err:
            return f"its Ray actor died ({type(err).__name__})"

    running: dict[int, _Placed] = {}
    restarts = 0
    try:
        running = {spec.index: place(spec) for spec in specs}
        while running:
            time.sleep(POLL_SECONDS)
            for index, worker in list(running.items()):
                code = exit_code(worker)
                if code is None:
                    continue
                del running[index]
                _kill(ray, worker.actor)  # frees its CPUs and GPUs
                if code != 0:
                    how = code if isinstance(code, str) else f"exited with {f'signal {-code}' if code < 0 else f'code {code}'}"
                    log.warning("worker %d (%s) %s", index, worker.owner or "not started", how)
                    if worker.owner:
                        reap({worker.owner})
            if not running and n_finished(study) < cfg.study.n_trials and restarts < int(cfg.launch.max_restarts):
                restarts += 1
                log.warning("all workers stopped before the study was complete; starting them again (%d/%d)", restarts, cfg.launch.max_restarts)
                running = {spec.index: place(spec) for spec in specs}
    except KeyboardInterrupt:  # a second Ctrl-C meanwhile ends the wait: the actors are killed below
        asked = [worker.actor.interrupt.remote() for worker in running.values()]
        if asked:
            ray.wait(asked, num_returns=len(asked), timeout=STOP_GRACE_SECONDS)  # the grace starts once the stop reached them
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while running and time.monotonic() < deadline:
            running = {i: w for i, w in running.items() if exit_code(w) is None}
            time.sleep(POLL_SECONDS)
        raise
    finally:
        for worker in placed:
            _kill(ray, worker.actor)
        ray.shutdown()


def _kill(ray: Any, actor: Any) -> None:
    try:
        ray.kill(actor)
    except Exception as err:  # noqa: BLE001 - an actor already gone, or a cluster already unreachable
        log.debug("ray.kill: %s", err)


def _die_with_actor(fd: int) -> None:
    """Kill this process once its actor's end of the pipe closes (see :class:`RayWorker`)."""

    def watch() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="nnsearch-ray-actor-watch", daemon=True).start()


def main() -> None:
    """A Ray worker's process: ``python -m nnsearch.launch.ray_workers CONFIG``; the worker of every backend, tied to its actor."""
    # Ray starts its processes with SIGINT blocked (so that a Ctrl-C reaches the driver only) and a
    # blocked mask survives exec: unblock the stop signals, which stop this worker cleanly
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    fd = os.environ.pop(ACTOR_FD_ENV, None)
    if fd is not None and fd.isdigit():
        _die_with_actor(int(fd))
    from nnsearch.launch.worker import main as worker_main

    worker_main()


if __name__ == "__main__":
    main()
