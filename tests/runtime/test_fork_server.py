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
