"""A start that imports torch, Lightning and MLflow makes hundreds of thousands of lasting objects;
no full garbage collection walks them while they are made, and once frozen they are never walked."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from nnsearch.runtime import fork_server

SCRIPT = """
import gc, sys
from nnsearch.runtime import startup_gc
before = gc.get_threshold()
if sys.argv[1] == "held":
    startup_gc.hold()
full = gc.get_stats()[2]["collections"]
lasting = [[object()] for _ in range(400_000)]  # what importing libraries makes: objects that live on, in containers
print(gc.get_stats()[2]["collections"] - full)
startup_gc.release()
print(gc.get_threshold() == before, gc.get_freeze_count() >= 400_000 if sys.argv[1] == "held" else gc.get_freeze_count() == 0)
"""


def _full_collections(mode):
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_while_held_no_full_collection_runs_and_what_was_made_is_frozen_after():
    collections, restored, frozen = _full_collections("held")
    assert collections == "0"
    assert restored == "True" and frozen == "True"


def test_unheld_the_same_objects_set_off_full_collections():
    collections, restored, untouched = _full_collections("plain")
    assert int(collections) >= 1  # what holding saves: each of these walks every lasting object
    assert restored == "True" and untouched == "True"  # release without a hold changes nothing


def _collecting() -> tuple[tuple[int, ...], int]:
    import gc

    return gc.get_threshold(), gc.get_freeze_count()


@pytest.mark.skipif(fork_server.context().get_start_method() != "forkserver", reason="no fork server on this platform")
def test_the_fork_server_imports_without_full_collections_and_a_fold_process_collects_as_usual():
    from nnsearch.runtime import startup_gc

    fork_server.boot()
    with ProcessPoolExecutor(1, mp_context=fork_server.context()) as pool:
        (_, _, held), _ = pool.submit(_collecting).result(timeout=120)
    assert held == startup_gc.HELD_BACK  # as the server imported torch, Lightning and scikit-learn
    # a fold process releases them first (nnsearch.cv.pool's initializer)
    with ProcessPoolExecutor(1, mp_context=fork_server.context(), initializer=startup_gc.release) as pool:
        (_, _, threshold), frozen = pool.submit(_collecting).result(timeout=120)
    assert threshold != startup_gc.HELD_BACK
    assert frozen > 100_000  # what the server imported, never walked again
