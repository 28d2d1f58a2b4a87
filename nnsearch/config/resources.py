"""Where nnsearch's own files are: the Hydra config tree (``conf/``) and the shipped study files (``studies/``).

In the repository both folders sit beside the package (``conf/``, ``studies/``, ``nnsearch/``). A
built wheel (``pip install .``, ``pip install nnsearch-*.whl``) carries them as package data inside
the package, at ``nnsearch/_resources/conf`` and ``nnsearch/_resources/studies`` (``pyproject.toml``
maps those names onto the two folders). The installed copy is looked for first, so an installed
nnsearch never picks up some unrelated ``conf/`` folder in ``site-packages``; a source checkout
and an editable install have no such copy and read the repository's folders.

Hydra's ``config_path`` needs a real directory, and pip installs wheels unpacked, so both are
plain paths. Only :mod:`pathlib` is imported: the CLI's start-up stays fast.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # the nnsearch package (this module is in nnsearch/config)
INSTALLED = PACKAGE / "_resources"  # the wheel's copy (package data)
CHECKOUT = PACKAGE.parent  # the repository root, in a source checkout or an editable install


def _find(name: str, marker: str | None = None) -> Path:
    """``_resources/NAME`` of an installed package, else ``NAME`` beside the package.

    ``marker``: a file that must be in the folder for it to count (``config.yaml`` for ``conf``).
    When neither exists, the checkout's path is returned: callers report what is missing there.
    """
    for folder in (INSTALLED / name, CHECKOUT / name):
        if folder.is_dir() and (marker is None or (folder / marker).is_file()):
            return folder
    return CHECKOUT / name


def conf_dir() -> Path:
    """The Hydra config tree: ``config.yaml`` and one folder per config group."""
    return _find("conf", marker="config.yaml")


def shipped_studies_dir() -> Path:
    """The study files that come with nnsearch (a user's own ``./studies`` is searched after them)."""
    return _find("studies")
