"""Where a study ran: system, package versions and the git commit of the user's project.

A result is only reproducible with the code and library versions that produced it, so the parent
run records them: short values as tags (searchable in the MLflow UI, e.g.
``tags.env.torch = '2.13.0+cpu'``) and everything in ``environment.json``. The git commit is that
of the directory the study runs from (the user's project, not nnsearch's own checkout); MLflow's
``mlflow.source.git.commit`` tag is set too, so the UI shows it in the run header.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("nnsearch", "torch", "lightning", "optuna", "optuna-integration", "mlflow", "hydra-core", "scikit-learn", "torchmetrics", "numpy", "pandas", "matplotlib")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names``; a package that is absent is left out."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_state(directory: Path | str = ".") -> dict[str, Any] | None:
    """``{"commit", "dirty", "branch", "root"}`` of the git work tree holding ``directory``, or None.

    None when git is missing, the folder is not in a repository, or the repository has no commit.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        root = git("rev-parse", "--show-toplevel")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty, "branch": branch, "root": root}


def describe(directory: Path | str = ".") -> dict[str, Any]:
    """Everything recorded: python, platform, CPU count, torch's devices, packages, git."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": _cpu_count(),
        "executable": sys.executable,
        "packages": package_versions(),
    }
    torch = sys.modules.get("torch")  # only if already loaded: never pay its import for a tag
    if torch is not None:
        info["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    info["git"] = git_state(directory)
    return info


def _cpu_count() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def tags(info: dict[str, Any]) -> dict[str, str]:
    """Short searchable tags from :func:`describe`'s result."""
    out = {"env.python": info["python"], "env.platform": info["platform"], "env.cpus": str(info["cpus"])}
    out.update({f"env.{name}": version for name, version in info["packages"].items()})
    if info.get("cuda"):
        out["env.cuda"] = info["cuda"]
    git = info.get("git")
    if git:
        out.update({"git.commit": git["commit"], "git.dirty": str(git["dirty"]).lower(), "git.branch": git["branch"], "mlflow.source.git.commit": git["commit"]})
    return out
