"""Units of nnsearch/study/trials.py: the sampler seed of each process joining a study, who creates a study.

No training here: every test runs in a fraction of a second.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import optuna
import pytest

from nnsearch.study.trials import process_seed


def _joined(**changes):
    """The seed of a process that did not create the study; ``changes`` replace the defaults."""
    inputs = {"seed": 7, "created": False, "trials_before": 0, "worker_index": 0, "host": "h", "pid": 100} | changes
    seed = inputs.pop("seed")
    return process_seed(seed, **inputs)


# -- process_seed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("trials_before", "host", "pid"), [(0, "h", 1), (5, "other", 99999)])
def test_the_process_that_created_the_study_samples_with_the_configured_seed(trials_before, host, pid):
    assert process_seed(7, created=True, trials_before=trials_before, worker_index=0, host=host, pid=pid) == 7
    assert process_seed(0, created=True, trials_before=trials_before, host=host, pid=pid) == 0  # worker_index defaults to 0


def test_every_process_but_the_creator_samples_with_a_seed_of_its_own():
    # the launcher created the study: its worker 0 is not the creator either, nor is a worker the launcher never had
    assert _joined() != 7
    assert process_seed(7, created=True, trials_before=0, worker_index=1, host="h", pid=1) != 7


@pytest.mark.parametrize(
    "change",
    [
        {"pid": 101},  # two runs started together on one host
        {"host": "other"},  # the same pid on another machine
        {"worker_index": 1},  # two workers of one launch
        {"trials_before": 3},  # a resumed study
        {"seed": 8},  # another configured seed
    ],
    ids=["pid", "host", "worker", "resume", "seed"],
)
def test_each_input_that_sets_a_process_apart_changes_its_seed(change):
    assert _joined(**change) != _joined()


def test_the_same_inputs_give_the_same_seed_in_any_process():
    # derived from its inputs alone: not from the clock, nor from Python's string hash, which differs between processes
    assert _joined() == _joined()
    inputs = {"worker_index": 2, "trials_before": 4, "host": "node-3", "pid": 4242}
    code = "from nnsearch.study.trials import process_seed; print(process_seed(7, created=False, worker_index=2, trials_before=4, host='node-3', pid=4242))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    elsewhere = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert int(elsewhere.stdout) == _joined(**inputs)


def test_seeds_of_many_workers_and_resumes_are_distinct_and_usable_by_every_sampler():
    seeds = [
        _joined(worker_index=w, trials_before=t, pid=p)
        for w, t, p in itertools.product(range(8), (0, 1, 10, 100), (100, 101, 65536))
    ]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**32 for s in seeds)  # numpy's RandomState (inside Optuna's samplers) takes no more
    for sampler in (optuna.samplers.RandomSampler, optuna.samplers.TPESampler, optuna.samplers.CmaEsSampler):
        sampler(seed=max(seeds))


# -- open_study -----------------------------------------------------------------------------------


def test_exactly_one_of_two_processes_opening_a_new_study_creates_it(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from nnsearch.study.trials import open_study

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "j.journal")))
    opened = [open_study("s", storage, directions=["maximize"], sampler=optuna.samplers.RandomSampler(), pruner=None) for _ in range(2)]
    assert [created for _, created in opened] == [True, False]


def test_a_resumed_study_must_keep_its_directions():
    from nnsearch.errors import NNSearchError
    from nnsearch.study.trials import open_study

    storage = optuna.storages.InMemoryStorage()
    open_study("s", storage, directions=["maximize"], sampler=optuna.samplers.RandomSampler(), pruner=None)
    with pytest.raises(NNSearchError, match=r"already exists in this storage with direction\(s\) \['maximize'\], not \['minimize'\]"):
        open_study("s", storage, directions=["minimize"], sampler=optuna.samplers.RandomSampler(), pruner=None)


def test_a_dead_trial_found_by_two_processes_is_queued_again_once():
    """A worker and the launcher may both find the same dead trial: one retry, not two."""
    import optuna

    from nnsearch.study.trials import requeue

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(dead, state=optuna.trial.TrialState.FAIL)
    frozen = study.trials[0]
    assert requeue(study, frozen, max_retry=2) and requeue(study, frozen, max_retry=2)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].params == frozen.params and waiting[0].system_attrs["failed_trial"] == 0
