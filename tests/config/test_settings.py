"""Each room's typed settings refuse a bad value with the key and the value in one line."""

from __future__ import annotations

import pytest

from conftest import compose
from nnsearch.cv.settings import CVSettings
from nnsearch.errors import NNSearchError
from nnsearch.launch.settings import LaunchSettings
from nnsearch.study.settings import StudySettings
from nnsearch.tracking.settings import ReportSettings, TrackingSettings

BUILD = {"cv": CVSettings.from_config, "study": StudySettings.from_config, "tracking": TrackingSettings.from_config,
         "report": ReportSettings.from_config, "launch": LaunchSettings.from_config}


@pytest.mark.parametrize(("override", "message"), [
    ("cv.folds=1", "cv.folds must be an integer of at least 2, got 1"),
    ("cv.test_size=1.5", "cv.test_size must be a fraction in (0, 1) or 0 for none, got 1.5"),
    ("cv.fold_score=median", "cv.fold_score must be last or best, got 'median'"),
    ("cv.parallel=many", "cv.parallel must be 'auto' or a positive integer, got 'many'"),
    ("study.n_trials=0", "study.n_trials must be a positive integer, got 0"),
    ("study.timeout=-5", "study.timeout must be a positive number of seconds"),
    ("study.max_failed_trials=0", "study.max_failed_trials must be a positive integer, got 0"),
    ("tracking.trial_plots=some", "tracking.trial_plots must be one of all, complete, none, got 'some'"),
    ("report.progress=loud", "report.progress must be one of auto, live, plain, off, got 'loud'"),
    ("report.top_k=0", "report.top_k must be a positive integer, got 0"),
    ("launch.workers=0", "launch.workers must be at least 1, got 0"),
    ("launch.backend=k8s", "launch.backend must be one of local, submitit, ray, got 'k8s'"),
    ("launch.max_retry=-1", "launch.max_retry must be a non-negative integer, got -1"),
])
def test_a_bad_setting_is_refused_with_its_key_and_value(override, message):
    cfg = compose(["+study=wine_mlp", override])
    room = override.split(".")[0]
    with pytest.raises(NNSearchError) as refused:
        BUILD[room](cfg[room])
    assert message in str(refused.value)


def test_the_shipped_defaults_build_and_read_as_the_config_says():
    cfg = compose(["+study=wine_mlp", "launch.gpus=[0,1]", "launch.workers_per_gpu=2"])
    cv, launch = CVSettings.from_config(cfg.cv), LaunchSettings.from_config(cfg.launch)
    assert (cv.folds, cv.test_size, cv.fold_score) == (cfg.cv.folds, cfg.cv.test_size, "last")
    assert launch.n_workers == 4 and launch.distributed
    tracking = TrackingSettings.from_config(compose(["+study=wine_mlp", "tracking.uri=sqlite:///here.db"]).tracking)
    assert tracking.absolute_uri.startswith("sqlite:////") and tracking.absolute_uri.endswith("/here.db")
