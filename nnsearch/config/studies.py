"""Study files (``studies/NAME.yaml``) as the Hydra config group ``study``, selected with ``+study=NAME``.

Hydra looks up groups inside its config tree, but studies live beside it: in this project's
``studies/`` (an installed package carries a copy, see :mod:`nnsearch.config.resources`) and in
``./studies`` of the directory the user runs from (searched last, so a user's own file of the
same name wins). Each file is registered in Hydra's ConfigStore at the global package, like an
"experiment" config, and its file name becomes ``study.name`` unless the file sets one.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from nnsearch.config.resources import shipped_studies_dir

SHIPPED_STUDIES = shipped_studies_dir()  # the repository's studies/, or the installed package's copy
STUDY_FILE_ERROR = "_study_file_error_"  # key of the config a broken study file is registered as


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


def requested_studies(argv: list[str]) -> set[str]:
    """The study names a command line selects: ``+study=NAME``, ``study=A,B`` (a sweep); empty when it selects none."""
    names: set[str] = set()
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "study":
            names.update(v.strip() for v in value.split(","))
    return names


def register_studies(only: set[str] | None = None) -> None:
    """Make every study file selectable as ``+study=NAME`` (and register nnsearch's resolvers).

    ``only``: the names the command line selects (:func:`requested_studies`). When each is a study
    file, only those files are read (reading all of them takes a large share of a second at every
    start); otherwise every one is, so that Hydra's error lists the choices.

    A file that is not a YAML mapping is registered too, as a config holding only
    :data:`STUDY_FILE_ERROR` (what is wrong with it): a stray file in ``./studies`` must not break
    the other studies, and the one who picks it gets that line instead of the default study.
    """
    from hydra.core.config_store import ConfigStore

    register_resolvers()
    store = ConfigStore.instance()
    files = study_files()
    if only and only <= files.keys():
        files = {name: files[name] for name in sorted(only)}
    for name, file in files.items():
        problem, node = _read(file)
        if problem is not None:
            store.store(group="study", name=name, node={STUDY_FILE_ERROR: problem}, package="_global_", provider=str(file.parent))
            continue
        named = OmegaConf.merge({"study": {"name": name}}, node) if OmegaConf.select(node, "study.name") is None else node
        # keep the defaults list (overrides of other groups) as written
        store.store(group="study", name=name, node=named, package="_global_", provider=str(file.parent))


def _read(file: Path) -> tuple[str | None, object]:
    """``(problem, node)``: the file's config, or why it is not a study.

    OmegaConf reads a plain text line as a mapping of that text to null (``{"cd foo": None}``), so
    the kind of document is judged by PyYAML, on which OmegaConf's own loader is built.
    """
    import yaml

    try:
        text = file.read_text()
        document = yaml.safe_load(text)
        node = OmegaConf.load(file) if document is not None else OmegaConf.create({})
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = " ".join(str(err).split())
        return f"study file {file} cannot be read as YAML: {first}", None
    if document is not None and not isinstance(document, dict):
        shown = " ".join(str(document).split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return (
            f"study file {file} is not a YAML mapping of settings (it reads as the {type(document).__name__} {shown!r}); "
            "a study sets keys such as study:, search_space: and model:."
        ), None
    return None, node
