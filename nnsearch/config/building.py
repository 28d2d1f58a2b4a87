"""Objects built from config groups with ``hydra.utils.instantiate``, errors stated in config terms.

Hydra wraps a constructor's error in a long ``InstantiationException``; here it becomes one line
naming the group and the bad option, e.g. ``sampler: TPESampler got an unexpected keyword 'foo'``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError


def build(group: str, node: DictConfig | None, **kwargs: Any) -> Any:
    """Instantiate ``node`` (a config group's content) with runtime ``kwargs``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if node is None or "_target_" not in node:
        raise NNSearchError(f"Config group '{group}' has no _target_ to build.")
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, NNSearchError):
            raise cause from None
        message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise NNSearchError(f"{group}: cannot build {node._target_}: {message}") from None
    except NNSearchError:
        raise
    except (TypeError, ValueError) as err:
        raise NNSearchError(f"{group}: cannot build {node._target_}: {err}") from None


def build_network(cfg: DictConfig, input_shape: tuple[int, ...], n_outputs: int) -> Any:
    """The network of ``cfg.model``: a shipped family, or ``model=net``'s own ``nn.Module`` (``cfg.model.net``).

    A user's network is given ``input_shape`` and ``n_outputs`` only if its constructor takes them.
    """
    shape = {"input_shape": tuple(input_shape), "n_outputs": n_outputs}
    if "net" in cfg.model and "_target_" not in cfg.model:
        node = cfg.model.net
        return build("model.net", node, **{k: v for k, v in shape.items() if takes_keyword(node, k)})
    return build("model", network_node(cfg.model), **shape)


TRANSFER_KEYS = ("init_from", "freeze")  # model.* keys of nnsearch.models.transfer, not arguments of the network
OWN_KEYS = (*TRANSFER_KEYS, "task_weights")  # and the multi-task loss's weights (nnsearch.models.multitask)


def network_node(model: DictConfig) -> DictConfig:
    """``model`` without nnsearch's own keys (``model.init_from``, ``model.freeze``, ``model.task_weights``), which
    are not network settings."""
    if not any(k in model for k in OWN_KEYS):
        return model
    # resolved first: a detached copy would lose interpolations into the rest of the config (${data.vocab_size})
    settings = OmegaConf.to_container(model, resolve=True)
    return OmegaConf.create({k: v for k, v in settings.items() if k not in OWN_KEYS})


def takes_keyword(node: DictConfig, name: str) -> bool:
    """Whether the callable ``node._target_`` names accepts the keyword ``name`` (its import error says which target)."""
    import inspect

    from hydra.utils import get_method

    target = node.get("_target_") if node is not None else None
    if not target or target == "???":
        raise NNSearchError("model.net._target_ is not set: name your nn.Module, e.g. model.net._target_=mylab.nets.TinyNet.")
    try:
        fn = get_method(target)
    except Exception as err:  # noqa: BLE001 - Hydra wraps the import error
        raise import_failed("model.net._target_", target, err) from None
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def optional_partial(group: str, node: DictConfig | None) -> Any:
    """A ``_partial_`` factory, or None where the group is empty (e.g. ``scheduler=none``)."""
    if node is None or not OmegaConf.is_dict(node) or "_target_" not in node:
        return None
    return build(group, node)


def build_sampler(cfg: DictConfig, grid: dict[str, list] | None = None, *, seed: int | None = None) -> Any:
    """The Optuna sampler; the grid sampler is given the study's grid at run time; ``seed`` replaces ``sampler.seed``."""
    sampler = build("sampler", cfg.sampler, **({"seed": seed} if seed is not None else {}))
    if callable(sampler) and not hasattr(sampler, "sample_relative"):
        if grid is None:
            raise NNSearchError("sampler: this sampler needs the search space as a grid.")
        sampler = sampler(search_space=grid)
    return sampler


def build_pruner(cfg: DictConfig) -> Any:
    return build("pruner", cfg.pruner)


def import_failed(where: str, target: str, err: BaseException) -> NNSearchError:
    """One line for a ``_target_`` that does not import, naming the root error (Hydra's own first line only says
    "Error loading"), e.g. ``model.module._target_=mylab.nowhere.M: cannot import it (ModuleNotFoundError: No module named 'mylab.nowhere')``."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    first = (str(root).strip().splitlines() or [""])[0]
    return NNSearchError(f"{where}={target}: cannot import it ({type(root).__name__}: {first}); is its package in the folder you run from?")


def instantiate_node(where: str, node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with a failure (an import that fails, a bad keyword) as one line naming ``where``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if not isinstance(node, dict) or not node.get("_target_") or node.get("_target_") == "???":
        raise NNSearchError(f"{where}._target_ is not set: name your class, e.g. {where}._target_=mylab.data.MyData.")
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        if isinstance(cause, (ImportError, AttributeError)) or "Error locating target" in str(err):
            raise import_failed(f"{where}._target_", node["_target_"], err) from None
        raise NNSearchError(f"{where}: cannot build {node['_target_']}: {first}") from None
