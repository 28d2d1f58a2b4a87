"""Transfer learning: a fold's network starts from the weights of an earlier model, parts of it frozen.

``model.init_from`` names the source: an MLflow model URI of a study's final model (``models:/NAME/latest``,
``models:/m-<id>``, ``runs:/<run id>/model``) or a checkpoint file (a Lightning ``.ckpt``, whose
``state_dict`` is used, or a plain state dict saved with ``torch.save``). The source's tensors are
matched to the new network's by name and shape; what has no match (a new head of another width)
keeps its fresh initialization and is trained from scratch, said once per process. A source that
matches no tensor at all is an error: the study would silently train from scratch.

``model.freeze`` keeps parts of the network at the source's values: a list of name prefixes
(``[net.1, net.3]``, names as in ``net.named_parameters()``), or a count ``N`` of leading blocks
(:func:`blocks`). Freezing uses Lightning's ``BaseFinetuning.freeze(..., train_bn=False)`` on the
network before the fit, so it works on both engines (a ``BaseFinetuning`` callback would need the
Trainer's ``on_fit_start``): frozen parameters get no gradient and are left out of the optimizer,
and frozen BatchNorm layers stop tracking running statistics, so their loaded statistics stay
as they were (they normalize with batch statistics while training, with the loaded ones in eval).
Dropout inside a frozen part still drops while training; it holds no weights.

Loading from MLflow is done once per process and source (:func:`source_state`), not per fold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnsearch.errors import NNSearchError

log = logging.getLogger("nnsearch")
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
NORMALIZATION = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm)
_STATES: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
_REPORTED: set[str] = set()


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(MLFLOW_SCHEMES)


def load_mlflow_model(uri: str, tracking_uri: str | None, *, setting: str) -> Any:
    """The Python model behind an MLflow pyfunc model URI (nnsearch's ``NNSearchModel`` or ``OwnModel``), loaded with
    MLflow's public API against ``tracking_uri``; a URI that does not load is one line naming ``setting``."""
    import os

    import mlflow
    import mlflow.pyfunc
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    previous = mlflow.get_tracking_uri()
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    progress_bar = os.environ.get(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)  # MLflow's download bars would bury a one-line error and the study's own lines
    try:
        return mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except Exception as err:  # noqa: BLE001 - MLflow raises many kinds for a URI that does not resolve
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise NNSearchError(f"{setting}={uri} does not load as an MLflow model: {first[:200]}") from None
    finally:
        mlflow.set_tracking_uri(previous)
        if progress_bar is None:
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.unset()
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = progress_bar


def network_of(model: Any) -> nn.Module:
    """The network inside a loaded final model: ``net`` of nnsearch's model, the module of one trained from your own code."""
    net = getattr(model, "net", None) or getattr(model, "module", None)
    if not isinstance(net, nn.Module):
        raise NNSearchError(f"the MLflow model is a {type(model).__name__}, not a final model of an nnsearch study (it has no network).")
    return net


def source_state(uri: str, tracking_uri: str | None = None) -> dict[str, torch.Tensor]:
    """The source's tensors by name (CPU), loaded once per process and URI."""
    key = (str(tracking_uri), uri)
    if key not in _STATES:
        if is_mlflow_uri(uri):
            state = network_of(load_mlflow_model(uri, tracking_uri, setting="model.init_from")).state_dict()
        else:
            state = _checkpoint_state(uri)
        _STATES[key] = {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}
    return _STATES[key]


def _checkpoint_state(path: str) -> Mapping[str, Any]:
    """A Lightning checkpoint's ``state_dict`` or a plain state dict; the file is trusted as the user's own."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise NNSearchError(f"model.init_from={path} is neither an MLflow model URI (models:/..., runs:/...) nor an existing checkpoint file.")
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - pickle and zip errors alike
        raise NNSearchError(f"model.init_from={path} cannot be read as a checkpoint: {type(err).__name__}: {err}") from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else getattr(loaded, "state_dict", lambda: None)()
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise NNSearchError(f"model.init_from={path} holds no state dict (a Lightning .ckpt or torch.save(model.state_dict()) is expected).")
    return state


def _aligned(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source`` with the prefix a LightningModule adds to its network (``net.``) dropped when that is what
    lines its names up with the network's."""
    if any(k in target for k in source):
        return dict(source)
    for prefix in ("net.", "model."):
        if source and all(k.startswith(prefix) for k in source):
            return _aligned({k[len(prefix) :]: v for k, v in source.items()}, target)
    return dict(source)


def load_matching(net: nn.Module, source: Mapping[str, torch.Tensor], *, uri: str) -> list[str]:
    """Copy every tensor of ``source`` whose name and shape match one of ``net``'s; return the names left fresh.

    A network with no tensor in common with the source is an error (it would train from scratch
    unnoticed); the tensors left fresh are logged once per process.
    """
    target = net.state_dict()
    source = _aligned(source, target)
    matched = {k: v for k, v in source.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    if not matched:
        ours = ", ".join(f"{k} {list(v.shape)}" for k, v in list(target.items())[:4])
        theirs = ", ".join(f"{k} {list(v.shape)}" for k, v in list(source.items())[:4])
        raise NNSearchError(f"model.init_from={uri}: no layer of the model matches the source by name and shape "
                            f"(the model has {ours or 'nothing'}; the source has {theirs or 'nothing'}).")
    net.load_state_dict(matched, strict=False)
    fresh = [k for k in target if k not in matched]
    if fresh:
        shown = ", ".join(f"{k} {list(target[k].shape)}" + (f" (source {list(source[k].shape)})" if k in source else " (not in source)")
                          for k in fresh[:6])
        message = f"model.init_from: {len(matched)} of {len(target)} tensors loaded; trained from scratch: {shown}"
        if message not in _REPORTED:
            _REPORTED.add(message)
            log.warning(message)
    return fresh


def blocks(net: nn.Module) -> list[list[nn.Module]]:
    """The network's blocks in order: each layer holding parameters starts one, and a normalization
    layer right after it (BatchNorm, LayerNorm, GroupNorm) joins its block. An MLP of ``n_layers`` has
    ``n_layers + 1`` blocks (the last is the head); a CNN one per convolution, the dense layer and the head."""
    found: list[list[nn.Module]] = []
    for module in net.modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if isinstance(module, NORMALIZATION) and found:
            found[-1].append(module)
        else:
            found.append([module])
    return found


def frozen_modules(net: nn.Module, freeze: Any) -> list[nn.Module]:
    """The modules ``model.freeze`` names: a count of leading :func:`blocks`, or name prefixes."""
    if freeze is None or freeze is False or freeze == 0 or freeze == []:
        return []
    if isinstance(freeze, int) and not isinstance(freeze, bool):
        found = blocks(net)
        if freeze < 0 or freeze >= len(found):
            raise NNSearchError(f"model.freeze={freeze} must be a count of leading blocks from 0 to {len(found) - 1}: "
                                f"the model has {len(found)} blocks and at least its last one (the head) must train.")
        return [m for block in found[:freeze] for m in block]
    prefixes = [freeze] if isinstance(freeze, str) else list(freeze) if isinstance(freeze, Sequence) else None
    if prefixes is None or not all(isinstance(p, str) and p for p in prefixes):
        raise NNSearchError(f"model.freeze must be a count of leading blocks or a list of layer-name prefixes, got {freeze!r}.")
    named = dict(net.named_modules())
    chosen: list[nn.Module] = []
    for prefix in prefixes:
        hits = [m for name, m in named.items() if name and (name == prefix or name.startswith(prefix.rstrip(".") + "."))]
        if not hits:
            names = sorted({n for n, m in named.items() if n and any(True for _ in m.parameters(recurse=False))})
            raise NNSearchError(f"model.freeze: no layer is named {prefix!r}; the model's layers with weights are {', '.join(names)}.")
        chosen += hits
    return chosen


def freeze(net: nn.Module, spec: Any) -> int:
    """Freeze what ``spec`` names (see the module docstring); returns how many parameter tensors are frozen."""
    from lightning.pytorch.callbacks import BaseFinetuning

    modules = frozen_modules(net, spec)
    if not modules:
        return 0
    BaseFinetuning.freeze(modules, train_bn=False)
    if not any(p.requires_grad for p in net.parameters()):
        raise NNSearchError(f"model.freeze={spec} freezes every layer of the model: nothing is left to train.")
    return sum(1 for p in net.parameters() if not p.requires_grad)


def init_and_freeze(net: nn.Module, model_cfg: Any, tracking_uri: str | None) -> None:
    """Apply ``model.init_from`` and ``model.freeze`` (either may be unset) to a freshly built network."""
    uri, spec = model_cfg.get("init_from"), model_cfg.get("freeze")
    if spec is not None and not isinstance(spec, (int, str)):
        from omegaconf import OmegaConf

        spec = OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec
    if uri:
        load_matching(net, source_state(str(uri), tracking_uri), uri=str(uri))
    elif spec not in (None, 0, [], False):
        raise NNSearchError(f"model.freeze={spec} needs model.init_from: frozen layers would keep their random initialization.")
    freeze(net, spec)
