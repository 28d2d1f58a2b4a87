"""Hydra's composition errors (unknown study or model, misspelt setting) as one line for the CLI.

Hydra prints these itself over several lines (the options, its config search path, a hint about
HYDRA_FULL_ERROR) and exits 1. ``__main__`` lets them reach it as exceptions instead, and this
module says what went wrong and what would be right, the way nnsearch's own errors do.
"""

from __future__ import annotations

import difflib
from pathlib import Path


def describe(err: Exception) -> str:
    """One line for a Hydra or OmegaConf error raised while composing the config."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        return _unknown_option(err.missing_cfg_file, list(err.options or []))
    setting = _unknown_setting(err)
    if setting is not None:
        return setting
    lines = _message_lines(err)
    if isinstance(err, OverrideParseException):
        return "cannot parse an override: " + "; ".join(lines)
    return " ".join(lines) or type(err).__name__


def _unknown_option(missing: str, options: list[str]) -> str:
    group, _, name = missing.rpartition("/")
    hint = _nearest(name, options)
    choices = ", ".join(options)
    if group == "study":
        return f"no study named {name!r}: no studies/{name}.yaml in {Path.cwd()} or among the shipped studies ({choices}).{hint}"
    return f"unknown {group} {name!r}; choose one of: {choices}.{hint}"


def _unknown_setting(err: Exception) -> str | None:
    """``trainer.max_epoch=3``: the key is not in the config. Names the nearest existing keys."""
    cause = err.__cause__
    full_key, parent = getattr(cause, "full_key", None), getattr(cause, "parent_node", None)
    key = getattr(cause, "key", None)
    if not full_key or key is None or parent is None or "not in struct" not in str(cause):
        return None
    prefix = full_key[: -len(str(key))] if full_key.endswith(str(key)) else ""
    keys = [f"{prefix}{k}" for k in parent.keys() if k != "hydra"]
    hint = _nearest(full_key, keys)
    append = next((line.split(" use ", 1)[1] for line in _message_lines(err) if line.startswith("To append")), None)
    new_key = f" (to add a new key, write {append})" if append else ""
    return f"{full_key} is not a setting{new_key}.{hint}"


def _nearest(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" Did you mean {match[0]}?" if match else ""


def _message_lines(err: Exception) -> list[str]:
    """The message without Hydra's config search path listing."""
    lines = []
    for line in str(err).splitlines():
        if line.startswith("Config search path"):
            break
        if line.strip():
            lines.append(line.strip())
    return lines
