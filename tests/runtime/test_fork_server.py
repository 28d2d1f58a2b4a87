"""The fold processes' fork server: fold processes start with torch and Lightning imported and see
the study's environment as it is when the pool starts; the server boots only for folds side by side."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest
from conftest import compose

from nnsearch.cv.settings import side_by_side_by_settings
from nnsearch.runtime import fork_server

pytestmark = pytest.mark.skipif(fork_server.context().get_start_method() != "forkserver", reason="no fork server on this platform")


def _imported_and_env() -> tuple[bool, bool, str | None]:
    return "torch" in sys.modules, "lightning" in sys.modules, os.environ.get("NNSEARCH_TEST_SEEN")


def _set_environment(environ: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(environ)


def test_a_fold_process_starts_with_torch_and_lightning_imported(monkeypatch):
    fork_server.boot()
    monkeypatch.setenv("NNSEARCH_TEST_SEEN", "after the server started")
    # as FoldPool starts its processes: the environment travels in the initargs
    with ProcessPoolExecutor(1, mp_context=fork_server.context(), initializer=_set_environment, initargs=(dict(os.environ),)) as pool:
        torch_loaded, lightning_loaded, seen = pool.submit(_imported_and_env).result(timeout=120)
    assert torch_loaded and lightning_loaded
    assert seen == "after the server started"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], True),
        (["cv.parallel=1"], False),
        (["cv.parallel=3"], True),
        (["pruner=wilcoxon"], False),
        (["trainer.accelerator=gpu"], False),
        (["trainer.devices=2", "trainer.accelerator=cpu"], False),
    ],
)
def test_the_server_boots_only_for_folds_side_by_side(monkeypatch, overrides, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert side_by_side_by_settings(compose(["+study=wine_mlp", *overrides])) is expected


@pytest.mark.parametrize(
    ("argv", "boots"),
    [(["+study=digits_mlp"], True), (["+study=digits_mlp", "command=run"], True), (["+study=digits_mlp", "command=leaderboard"], False),
     (["+study=digits_mlp", "--cfg", "job"], False), (["--help"], False)],
)
def test_the_command_boots_the_server_at_its_start_only_to_run_a_study(monkeypatch, argv, boots):
    booted = []
    monkeypatch.setattr(fork_server, "boot", lambda: booted.append(True))
    fork_server.boot_for(argv)
    assert bool(booted) == boots


def test_a_command_refused_at_start_leaves_no_fork_server_importing_behind(tmp_path):
    """The server boots before the config is checked; a refused command ends it rather than leave it importing for
    seconds (holding the command's output open: a pipe reading it would wait for the server too)."""
    import subprocess
    import uuid

    import psutil

    mark = uuid.uuid4().hex
    with open(tmp_path / "output.txt", "w") as output:  # a file, not a pipe: the check runs as soon as the command is gone
        command = subprocess.Popen([sys.executable, "-m", "nnsearch", "+study=digits_mlp", "data=csv", "data.path=missing.csv", "data.target=y"],
                                   cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "NNSEARCH_TEST_MARK": mark})
        assert command.wait(timeout=120) == 2, (tmp_path / "output.txt").read_text()
    left = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("NNSEARCH_TEST_MARK") == mark and process.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(process.cmdline())[:120])
                process.kill()
        except psutil.Error:  # another user's process, or one that ended meanwhile
            pass
    assert not left, left
