"""The study's workers as Ray actors (``launch.backend=ray``).

The end-to-end tests run Ray for real: a head started with ``ray start --head`` on 127.0.0.1 (a free
port, never Redis's 6379; its own temp dir; stopped through the ``ray start --block`` process this
test holds, so no other Ray on the machine is touched), or the local instance the launcher starts
when ``launch.ray.address`` is unset.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import compose, load_study, mlflow_runs
from optuna.trial import TrialState
from test_workers import FAST, _assert_exact, _assert_retried_once, _running_trials

from nnsearch.errors import NNSearchError
from nnsearch.launch.settings import LaunchSettings

RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")


# -- settings and refusals (fast) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("launch.ray.cpus_per_trial=0", "launch.ray.cpus_per_trial must be a positive number"),
        ("launch.ray.cpus_per_trial=-1", "launch.ray.cpus_per_trial must be a positive number"),
        ("launch.ray.gpus_per_trial=-0.5", "launch.ray.gpus_per_trial must be a positive number"),
        ("launch.ray.gpus_per_trial=1.5", "Ray takes a fraction below 1 or a whole number"),
        ("launch.ray.gpus_per_trial=two", "launch.ray.gpus_per_trial must be a positive number"),
        ("launch.ray.address=http://head:8265", "a Ray address is auto, ray://HOST:PORT or HOST:PORT"),
        ("launch.gpus=[0,1]", "with launch.backend=ray, Ray assigns them: set launch.ray.gpus_per_trial"),
    ],
)
def test_launch_ray_settings_are_checked_eagerly(override, message):
    with pytest.raises(NNSearchError, match=message):
        LaunchSettings.from_config(compose(["+study=wine_mlp", "launch.backend=ray", override]).launch)


def test_a_ddp_trial_needs_as_many_gpus_per_trial_as_devices():
    from nnsearch.launch.workers import check_launch

    cfg = compose(["+study=wine_mlp", "launch.backend=ray", "launch.ray.gpus_per_trial=1", "trainer.accelerator=gpu", "trainer.devices=2"])
    with pytest.raises(NNSearchError, match=r"trainer.devices=2 trains each trial on 2 GPUs \(DDP\), but launch.ray.gpus_per_trial=1 .* set launch.ray.gpus_per_trial=2"):
        check_launch(cfg)
    check_launch(compose(["+study=wine_mlp", "launch.backend=ray", "launch.ray.gpus_per_trial=2", "trainer.accelerator=gpu", "trainer.devices=2"]))


def test_fractional_gpus_pack_trials_and_cpus_set_the_threads():
    from nnsearch.launch.workers import worker_plan

    cfg = compose(["+study=wine_mlp", "launch.backend=ray", "launch.workers=4", "launch.ray.gpus_per_trial=0.5", "launch.ray.cpus_per_trial=2"])
    ray = LaunchSettings.from_config(cfg.launch).ray
    assert (ray.gpus_per_trial, ray.cpus_per_trial, ray.address) == (0.5, 2.0, None)
    specs = worker_plan(cfg)
    assert [s.index for s in specs] == [0, 1, 2, 3]
    assert {(s.threads, s.gpu) for s in specs} == {(2, None)}  # Ray, not the launcher, assigns the GPUs


INSTALL_LINE = 'launch.backend=ray needs Ray, which is not installed here: pip install "nnsearch[ray]" (in a checkout: pip install -e ".[ray]").'


def test_without_ray_installed_the_launch_check_says_how_to_install_it(monkeypatch):
    from nnsearch.launch.workers import check_launch

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds where it is not installed
    with pytest.raises(NNSearchError) as err:
        check_launch(compose(["+study=wine_mlp", "launch.backend=ray"]))
    assert str(err.value) == INSTALL_LINE


@pytest.mark.slow
def test_without_ray_installed_the_study_stops_before_anything_is_written(run_in_process, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(NNSearchError) as err:
        run_in_process("+study=wine_mlp", "launch.backend=ray", "launch.workers=2", *FAST)
    assert str(err.value) == INSTALL_LINE
    assert not (tmp_path / "optuna.journal").exists() and not (tmp_path / "mlflow.db").exists() and not (tmp_path / "outputs").exists()


def test_a_file_storage_is_refused_on_nodes_of_other_machines():
    from nnsearch.launch.ray_workers import shared_storage_problem

    here = socket.gethostname()
    journal = compose(["+study=wine_mlp", "launch.backend=ray"])
    assert shared_storage_problem(journal, [here]) is None  # a one-node cluster on this machine shares the file
    problem = shared_storage_problem(journal, [here, "gpu-node-1", "gpu-node-2"])
    assert "2 of the Ray cluster's 3 node(s) run on other machines than this one, but study.storage and tracking.uri are files" in problem
    assert "study.storage=postgresql://" in problem and "tracking.uri=http://" in problem and "\n" not in problem
    assert "1 of the Ray cluster's 1 node(s)" in shared_storage_problem(journal, ["head-pod"])  # a remote one-node cluster too
    shared = compose(["+study=wine_mlp", "launch.backend=ray", "study.storage=postgresql://u@db/optuna", "tracking.uri=http://mlflow:5000"])
    assert shared_storage_problem(shared, [here, "gpu-node-1"]) is None
    tracking_only = compose(["+study=wine_mlp", "launch.backend=ray", "study.storage=grpc://proxy:13000", "tracking.uri=sqlite:///mlflow.db"])
    assert "but tracking.uri is a file of this machine" in shared_storage_problem(tracking_only, [None])


def test_the_working_directory_travels_without_the_study_files(tmp_path, monkeypatch):
    from nnsearch.launch.ray_workers import _runtime_env

    monkeypatch.chdir(tmp_path)
    cfg = compose(["+study=wine_mlp", "launch.backend=ray", "study.storage=state/study.journal"])
    env = _runtime_env(cfg, LaunchSettings.from_config(cfg.launch).ray)
    assert env["working_dir"] == str(tmp_path)
    assert {"/state/study.journal", "/mlflow.db", "/outputs/", "/.git/"} <= set(env["excludes"])


# -- for real -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs; yields its address. ``ray start --block`` stays in the
    foreground and stops the head's processes when it is stopped, so only this head is touched."""
    port = _free_port()
    while port == 6379:  # Redis
        port = _free_port()
    temp_dir = f"/tmp/ray-{uuid.uuid4().hex[:6]}"  # short: Ray's socket paths have a length limit
    args = [RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}", f"--ray-client-server-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}"]
    with open(Path(temp_dir + ".log"), "w") as log:
        # RAY_AUTH_MODE=disabled: a head on loopback for this test, whether or not ~/.ray/auth_token exists (a
        # `ray start` finding one turns on token auth, which a client given an address must then be told of)
        head = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert head.poll() is None, Path(temp_dir + ".log").read_text()[-3000:]
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the Ray head did not start: " + Path(temp_dir + ".log").read_text()[-3000:])
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # the session this test started for it
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
        Path(temp_dir + ".log").unlink(missing_ok=True)


@pytest.mark.slow
def test_two_ray_workers_on_a_ray_head_reach_exactly_n_trials(run_cli, tmp_path, ray_head):
    result = run_cli("+study=wine_mlp", "launch.backend=ray", f"launch.ray.address={ray_head}", "launch.workers=2",
                     "study.n_trials=5", *FAST, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    _assert_exact(tmp_path, "wine_mlp", 5)
    assert "launching 2 ray worker(s): 1 CPU(s) and 0 GPU(s) each" in output
    assert "worker 0 started on Ray as" in output and "worker 1 started on Ray as" in output, output[-4000:]
    assert f"Ray: {ray_head}, 1 node(s), 2 CPU(s)" in output


def _ray_worker_of_a_trial_mid_way(proc, tmp_path, name, *, timeout=400, checkpointed=False):
    """Freeze (SIGSTOP) the process of a RUNNING trial that has reported an epoch (and, if
    ``checkpointed``, saved a fold checkpoint); returns it, its Ray worker process (the actor that
    started it) and the trial, checked still running once frozen."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the study ended before a worker was seen mid-trial"
        for trial in [t for t in _running_trials(tmp_path, name) if t.intermediate_values]:
            if checkpointed and not list((tmp_path / "checkpoints" / name / f"trial-{trial.number:04d}").glob("fold*.ckpt")):
                continue
            owner = trial.user_attrs["worker"]
            pid = int(owner.rsplit(":", 1)[1])
            try:
                os.kill(pid, signal.SIGSTOP)
                actor = psutil.Process(pid).parent()
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
            if any(t.number == trial.number and t.user_attrs.get("worker") == owner for t in _running_trials(tmp_path, name)):
                return pid, actor, trial
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.1)
    pytest.fail("no worker was seen mid-trial")


def _stop(proc):
    """A study left running by a failed test: SIGTERM first, so it stops its Ray instance itself."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_ray_worker_killed_mid_trial_fails_that_trial_which_is_retried_from_its_checkpoint(tmp_path):
    """The launcher starts a local Ray instance (no address); the Ray worker process of a running trial is
    killed once the trial saved a checkpoint: its retry resumes the interrupted fold there."""
    args = [sys.executable, "-m", "nnsearch", "+study=digits_mlp", "launch.backend=ray", "launch.workers=2", "study.n_trials=6",
            "cv.folds=2", "trainer.max_epochs=15", "cv.test_size=0", "pruner=none", "trainer.checkpoint_every=1"]
    with open(tmp_path / "output.txt", "w") as out:
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            pid, actor, caught = _ray_worker_of_a_trial_mid_way(proc, tmp_path, "digits_mlp", checkpointed=True)
            # the trial runs in a copy of the study's folder that Ray shipped, in a process of a Ray worker
            assert "working_dir_files" in Path(f"/proc/{pid}/cwd").resolve().as_posix()
            assert actor.cmdline()[0].startswith("ray::RayWorker"), actor.cmdline()  # the title Ray gives an actor's process
            actor.kill()  # SIGKILL: Ray's worker process dies, as when a node is lost or the OOM killer strikes
            os.kill(pid, signal.SIGCONT)  # the trial's process would run on; it dies with its actor
            proc.wait(timeout=600)
        finally:
            _stop(proc)
    output = (tmp_path / "output.txt").read_text()
    assert proc.returncode == 0, output[-4000:]
    assert "its Ray actor died" in output, output[-4000:]
    retry, children = _assert_retried_once(tmp_path, "digits_mlp", 6, caught.number, output)
    retried = [c for c in children if c.data.tags["optuna.trial_number"] == str(retry.number)]
    assert len(retried) == 1 and retried[0].data.tags.get("resumed_from", "").startswith("fold "), retried[0].data.tags
    assert not list((tmp_path / "checkpoints").glob("*/trial-*"))  # finished trials leave no checkpoints behind


@pytest.mark.slow
def test_ctrl_c_stops_the_ray_workers_cleanly(tmp_path):
    """SIGINT to the launcher mid-trial: each Ray worker records its running trial as failed and exits; nothing is left RUNNING."""
    args = [sys.executable, "-m", "nnsearch", "+study=digits_mlp", "launch.backend=ray", "launch.workers=2", "study.n_trials=20",
            "cv.folds=2", "trainer.max_epochs=40", "cv.test_size=0", "pruner=none"]
    with open(tmp_path / "output.txt", "w") as out:
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + 400
            caught = []
            while not caught:  # a trial that has reported an epoch: the stop reaches it mid-way
                assert proc.poll() is None and time.monotonic() < deadline, "no trial was seen mid-way"
                caught = [t for t in _running_trials(tmp_path, "digits_mlp") if t.intermediate_values]
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=180)
        finally:
            _stop(proc)
    output = (tmp_path / "output.txt").read_text()
    assert proc.returncode == 130, output[-4000:]
    assert "run the same command again to resume the study" in output
    study = load_study(tmp_path, "digits_mlp")
    assert not study.get_trials(states=(TrialState.RUNNING,)), output[-4000:]  # recorded by the workers, not left to a later run
    assert study.trials[caught[0].number].state == TrialState.FAIL
    _, parents, children = mlflow_runs(tmp_path, "digits_mlp")
    assert parents[0].info.status == "KILLED"
    assert not [c for c in children if c.info.status == "RUNNING"]
