"""nnsearch's own records on an Optuna study: its config, data digest, MLflow parent run, final model.

They live in the study's *system* attributes, through the storage's public API, so that the
study's user attributes stay the user's: ``optuna studies`` and optuna-dashboard then show a
narrow table instead of a 3,000-character config. Studies written by earlier versions kept these
records as user attributes; reading falls back to them.
"""

from __future__ import annotations

from typing import Any

CONFIG = "nnsearch.config"  # the study's composed config (YAML, credentials masked)
DATA = "nnsearch.data"  # rows, columns and a digest of the development data
PARENT_RUN = "mlflow_parent_run_id"  # the study's MLflow parent run
FINAL_MODEL = "nnsearch.final_model"  # {"trial": N, "run_id": ID}: the final model last logged


class StudyRecord:
    """Reads and writes nnsearch's records on ``study`` held in ``storage``."""

    def __init__(self, study: Any, storage: Any) -> None:
        self.study, self.storage = study, storage
        self._id = storage.get_study_id_from_name(study.study_name)

    def get(self, key: str, default: Any = None) -> Any:
        attrs = self.storage.get_study_system_attrs(self._id)
        if key in attrs:
            return attrs[key]
        return self.study.user_attrs.get(key, default)  # a study of an earlier nnsearch

    def set(self, key: str, value: Any) -> None:
        if self.get(key) != value:
            self.storage.set_study_system_attr(self._id, key, value)
