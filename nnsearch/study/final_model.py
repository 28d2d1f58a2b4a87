"""The study's answer as an MLflow model: the final fit (:mod:`nnsearch.study.final_fit`) wrapped as a
loadable ``mlflow.pyfunc`` model and logged in a ``final-model`` run.

The MLflow model (``mlflow.pyfunc``) takes raw features, applies the scaler fitted on the
development rows, and returns a DataFrame: ``prediction`` (the class label, or the value in target
units) and, for classification, ``proba_<label>`` per class (multi-task data: one column per target,
named after it, and ``<target>_proba_<label>`` per class of a class target). Its input, by the shape of the data:

- tabular (one feature axis): a DataFrame with one column per feature, named as in the data
  (``Dataset.feature_names``; ``feature_00``, ``feature_01``, ... when the data has none). Columns
  are taken by name, so their order does not matter and extra ones are ignored; a missing one is an
  ``MlflowException`` naming it. Any numeric dtype is accepted (a CSV as pandas reads it, ints
  included): the signature's columns are ``Any`` because MLflow's ``double`` refuses ``int64``
  columns, and the model converts each column to float itself, naming any that is not numeric.
- images and sequences: a float64 tensor shaped like the samples (``(-1, 1, 8, 8)``), which is
  what numpy builds from Python floats.
- data with a featurizer (``data=text``; ``data=csv`` with string columns or imputation): a DataFrame
  with the file's raw columns (the text column; the feature columns, strings and gaps as in the
  file). The featurizer fitted on the development rows (tokenizer, imputer, encoder, scaler) travels
  inside the model and turns them into the network's input.

It carries that signature, a float64 input example and nnsearch's code, and can be registered
under ``final.register_name``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from nnsearch.study.final_fit import FinalFit

log = logging.getLogger("nnsearch")
SUPERVISED_TASKS = ("binary", "multiclass", "regression", "multitask")


class OwnModel(mlflow.pyfunc.PythonModel):
    """The pyfunc wrapper of a module trained from the user's code: samples in (an array in the shape of one
    item, samples first), the module's ``forward`` outputs out, or class labels for a classification task."""

    def __init__(self, module: Any, classes: tuple = ()) -> None:
        self.module, self.classes = module.cpu().eval(), tuple(classes)

    def predict(self, context: Any, model_input: np.ndarray, params: dict | None = None) -> Any:
        import torch

        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            out = self.module(x)
        if not self.classes:
            return out.numpy()
        index = out.argmax(-1) if out.ndim == 2 and out.shape[-1] > 1 else (out.reshape(-1) > 0).long()
        return np.asarray(self.classes)[index.numpy()]


def _log_own_pyfunc(tracker: Any, run_id: str, fit: FinalFit, dev: Any, register_name: str | None) -> None:
    import torch
    from mlflow.models import infer_signature

    classes = dev.classes if dev.task is not None and dev.task.is_supervised and dev.task.is_classification else ()
    module = dev.inference_module(fit.module, dev.rows) if hasattr(dev, "inference_module") else fit.module  # an image folder's normalisation
    model = OwnModel(module, classes)
    if hasattr(dev, "dataset"):
        example = torch.stack([dev.dataset()[int(i)][0] for i in dev.rows[:2]]).numpy()
    else:
        example = np.asarray(dev.X[:2], dtype=np.float32)
    requirements = [f"{name}=={version}" for name, version in _requirements().items()]
    with _Quiet():
        tracker.log_pyfunc(run_id, model, signature=infer_signature(example, model.predict(None, example)), input_example=example,
                           pip_requirements=requirements, code_paths=fit.code_paths, registered_model_name=register_name)


def feature_columns(dev: Any) -> tuple[str, ...] | None:
    """Input column names of a tabular data set's model; None for images and sequences (tensors).

    The data's own feature names when there is one per feature and they are distinct, else
    ``feature_0``... (zero-padded, so they sort in order).
    """
    if getattr(dev, "featurizer", None) is not None:
        return tuple(dev.raw_columns)
    if len(dev.input_shape) != 1:
        return None
    n = dev.input_shape[0]
    names = tuple(str(name) for name in dev.feature_names)
    if len(names) == n and len(set(names)) == n and all(names):
        return names
    width = len(str(n - 1))
    return tuple(f"feature_{i:0{width}d}" for i in range(n))


class NNSearchModel(mlflow.pyfunc.PythonModel):
    """The pyfunc wrapper: raw features in, predictions (and class probabilities) out."""

    def __init__(
        self,
        net: Any,
        task: str,
        classes: tuple,
        target_scale: tuple[float, float],
        scaler: Any,
        input_shape: tuple[int, ...],
        *,
        columns: tuple[str, ...] | None = None,
        featurizer: Any = None,
    ) -> None:
        self.net, self.task, self.classes = net.cpu().eval(), task, tuple(classes)
        self.target_scale, self.scaler, self.input_shape = target_scale, scaler, tuple(input_shape)
        self.columns = tuple(columns) if columns else None
        self.featurizer = featurizer

    def _features(self, model_input: Any) -> np.ndarray:
        """float32 samples from a DataFrame (columns by name) or an array (in the samples' shape)."""
        import pandas as pd

        columns = getattr(self, "columns", None)  # models pickled before columns existed
        if columns and isinstance(model_input, pd.DataFrame):
            missing = [c for c in columns if c not in model_input.columns]
            if missing:
                raise mlflow.MlflowException(f"Model input is missing column(s) {missing}; the model takes {len(columns)} columns: {list(columns)}.")
            frame = model_input[list(columns)]
            if getattr(self, "featurizer", None) is not None:
                from nnsearch.cv.splits import featurized

                return featurized(self.featurizer, frame.to_numpy(dtype=object))
            bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
            if bad:
                raise mlflow.MlflowException(f"Model input column(s) {bad} are not numeric (dtypes {[str(frame[c].dtype) for c in bad]}).")
            return frame.to_numpy(dtype=np.float32)
        return np.asarray(model_input, dtype=np.float32).reshape(-1, *self.input_shape)

    def _outputs(self, model_input: Any) -> Any:
        """The network's raw outputs (float32 tensor) for raw input: features taken by name, scaled as in training."""
        import torch

        x = self._features(model_input)
        if self.scaler is not None:
            table = x.reshape(-1, x.shape[-1]) if x.ndim == 3 else x.reshape(len(x), -1)
            x = self.scaler.transform(table).reshape(x.shape).astype(np.float32)
        with torch.no_grad():
            return self.net(torch.as_tensor(x)).float()

    def predict(self, context: Any, model_input: np.ndarray, params: dict | None = None) -> Any:
        """``model_input``: a DataFrame of raw features (tabular data) or an array of raw samples;
        returns a DataFrame.

        ``np.ndarray`` is one of the hints MLflow takes as "no schema from the hint": the logged
        signature validates inputs first (see the module docstring), DataFrames included.
        """
        import pandas as pd
        import torch

        out = self._outputs(model_input)
        if self.task == "regression":
            mean, std = self.target_scale
            return pd.DataFrame({"prediction": (out.squeeze(-1) * std + mean).numpy().astype(np.float64)})
        if self.task == "binary":
            p1 = torch.sigmoid(out.squeeze(-1)).numpy().astype(np.float64)
            proba = np.stack([1 - p1, p1], axis=1)
        else:
            proba = torch.softmax(out, dim=-1).numpy().astype(np.float64)
        labels = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        frame = pd.DataFrame({"prediction": [_plain(v) for v in labels]})
        for k, label in enumerate(self.classes):
            frame[f"proba_{label}"] = proba[:, k]
        return frame


class MultiTaskModel(NNSearchModel):
    """The pyfunc wrapper of a multi-task model: raw features in, a DataFrame out with one column per
    target (its class label or its value in target units) and, per class target ``t``, ``t_proba_<label>`` per class."""

    def __init__(self, net: Any, targets: tuple, target_scale: tuple, scaler: Any, input_shape: tuple[int, ...], *, columns: tuple[str, ...] | None = None) -> None:
        super().__init__(net, "multitask", (), (0.0, 1.0), scaler, input_shape, columns=columns)
        self.targets, self.target_scales = tuple(targets), tuple(target_scale)

    def predict(self, context: Any, model_input: np.ndarray, params: dict | None = None) -> Any:
        import pandas as pd
        import torch

        out = self._outputs(model_input)
        blocks = torch.split(out, [t.width for t in self.targets], dim=-1)
        frame = pd.DataFrame(index=range(len(out)))
        probas = {}
        for spec, block, (mean, std) in zip(self.targets, blocks, self.target_scales, strict=True):
            if spec.task.value == "regression":
                frame[spec.name] = (block.squeeze(-1) * std + mean).numpy().astype(np.float64)
                continue
            if spec.task.value == "binary":
                p1 = torch.sigmoid(block.squeeze(-1)).numpy().astype(np.float64)
                proba = np.stack([1 - p1, p1], axis=1)
            else:
                proba = torch.softmax(block, dim=-1).numpy().astype(np.float64)
            frame[spec.name] = [_plain(v) for v in np.asarray(spec.classes, dtype=object)[proba.argmax(axis=1)]]
            probas.update({f"{spec.name}_proba_{label}": proba[:, k] for k, label in enumerate(spec.classes)})
        return frame.assign(**probas) if probas else frame


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def pyfunc_model(fit: FinalFit, dev: Any) -> NNSearchModel:
    """The pyfunc wrapper around the final network, its scaler and the class labels."""
    if getattr(dev, "targets", ()):
        return MultiTaskModel(fit.module.net, dev.targets, fit.module.target_scale, fit.scaler, dev.input_shape, columns=feature_columns(dev))
    featurizer = fit.scaler if getattr(dev, "featurizer", None) is not None else None
    return NNSearchModel(
        fit.module.net,
        dev.task.value,
        dev.classes,
        getattr(fit.module, "target_scale", (0.0, 1.0)),
        None if featurizer is not None else fit.scaler,
        dev.input_shape,
        columns=feature_columns(dev),
        featurizer=featurizer,
    )


def model_signature(model: NNSearchModel, dev: Any) -> tuple[Any, Any]:
    """The signature and input example: named columns for tabular data, a float64 tensor else."""
    import pandas as pd
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    if model.featurizer is not None:
        raw = np.asarray(dev.X[:5], dtype=object).reshape(min(5, len(dev.X)), -1)
        rows = pd.DataFrame(raw, columns=list(model.columns)).infer_objects()
    else:
        rows = np.asarray(dev.X[:5], dtype=np.float64)
    if model.columns:
        example = rows if model.featurizer is not None else pd.DataFrame(rows, columns=list(model.columns))
        outputs = infer_signature(example, model.predict(None, example)).outputs
        return ModelSignature(inputs=Schema([ColSpec(AnyType(), name) for name in model.columns]), outputs=outputs), example
    return infer_signature(rows, model.predict(None, rows)), rows


class _Quiet:
    """MLflow prints lines about registering, pickling and environment inference while logging a
    model; the report already says what was logged, so only errors get through."""

    def __enter__(self) -> None:
        self.levels = {name: logging.getLogger(name).level for name in ("mlflow", "alembic")}
        for name in self.levels:
            logging.getLogger(name).setLevel(logging.ERROR)
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: Any) -> None:
        self.warnings.__exit__(*exc)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)


def log_final_model(tracker: Any, fit: FinalFit, dev: Any, *, trial: Any | None, params: dict[str, Any], register_name: str | None = None, log_model: bool = True) -> str:
    """A ``final-model`` child run of the study (:meth:`Tracker.final_run`): test metrics, params,
    the pyfunc model (:meth:`Tracker.log_pyfunc`) and, with a test split, the trials' diagnostic
    plots drawn for the test rows (:meth:`Tracker.log_test_plots`).

    Returns the child run id; its tag ``model_uri`` says where the model is
    (``mlflow.pyfunc.load_model(uri)``). The model is logged only for supervised tasks (the others have no
    single prediction to serve).
    """
    run_params = {**params, "seed": fit.seed, "epochs": fit.epochs, "rows.train": fit.n_train, "rows.test": fit.n_test}
    metrics = {f"test/{k}": v for k, v in fit.test_metrics.items()}
    with tracker.final_run(trial_number=trial.number if trial else None, params=run_params, metrics=metrics) as run_id:
        if log_model and fit.code_paths:
            _log_own_pyfunc(tracker, run_id, fit, dev, register_name)
        elif log_model and dev.task.value in SUPERVISED_TASKS:
            _log_pyfunc(tracker, run_id, fit, dev, register_name)
        elif log_model:
            log.info("final model: not logged as an MLflow model (task %s has no single prediction to serve)", dev.task.value)
        if fit.test_predictions is not None:
            tracker.log_test_plots(run_id, fit.test_predictions)
    return run_id


def _log_pyfunc(tracker: Any, run_id: str, fit: FinalFit, dev: Any, register_name: str | None) -> None:
    import nnsearch

    with _Quiet():
        model = pyfunc_model(fit, dev)
        signature, example = model_signature(model, dev)
    requirements = [f"{name}=={version}" for name, version in _requirements().items()]
    with _Quiet():
        tracker.log_pyfunc(
            run_id,
            model,
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            code_paths=[str(Path(nnsearch.__file__).parent)],
            registered_model_name=register_name,
        )


def _requirements() -> dict[str, str]:
    """Pinned versions of what the model needs to load (no slow environment inference)."""
    from nnsearch.runtime.environment import package_versions

    names = ("torch", "numpy", "pandas", "scikit-learn", "mlflow", "cloudpickle", "omegaconf", "hydra-core", "lightning", "torchmetrics")
    return package_versions(names)
