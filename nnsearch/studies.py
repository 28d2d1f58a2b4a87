"""Study files (``studies/NAME.yaml``) as the Hydra config group ``study``, selected with ``+study=NAME``.

Hydra looks up groups inside its config tree, but studies live beside it: in this project's
``studies/`` and in ``./studies`` of the directory the user runs from (searched last, so a
user's own file of the same name wins). Each file is registered in Hydra's ConfigStore at the
global package, like an "experiment" config, and its file name becomes ``study.name`` unless
the file sets one.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

SHIPPED_STUDIES = Path(__file__).resolve().parent.parent / "studies"


def study_dirs() -> list[Path]:
    """Folders holding study files, lowest precedence first."""
    dirs = [SHIPPED_STUDIES, Path.cwd() / "studies"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in unique:
            unique.append(d.resolve())
    return unique


def study_files() -> dict[str, Path]:
    """Study name -> file; a later folder overrides an earlier one."""
    files: dict[str, Path] = {}
    for folder in study_dirs():
        for file in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            files[file.stem] = file
    return files


def register_resolvers() -> None:
    """Arithmetic the config files use, e.g. Hyperband's ``${multiply:${cv.folds},${trainer.max_epochs}}``."""
    if not OmegaConf.has_resolver("multiply"):
        OmegaConf.register_new_resolver("multiply", lambda a, b: a * b)


def register_studies() -> None:
    """Make every study file selectable as ``+study=NAME`` (and register nnsearch's resolvers)."""
    from hydra.core.config_store import ConfigStore

    register_resolvers()
    store = ConfigStore.instance()
    for name, file in study_files().items():
        node = OmegaConf.load(file)
        if not isinstance(node, dict) and not OmegaConf.is_dict(node):
            continue
        named = OmegaConf.merge({"study": {"name": name}}, node) if OmegaConf.select(node, "study.name") is None else node
        # keep the defaults list (overrides of other groups) as written
        store.store(group="study", name=name, node=named, package="_global_", provider=str(file.parent))
