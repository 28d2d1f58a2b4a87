"""nnsearch as an ordinary package: a built wheel carries conf/ and studies/, and a user's own code
(``./mylab``) is importable in every process a study starts.

The slow tests build from a copy of the repository (the build writes ``build/`` and ``*.egg-info``
beside the sources) and install into a fresh virtual environment that sees the dependencies of
this one through a ``.pth`` line, but not this checkout: a line in a ``.pth`` file adds the folder
only, so the editable install's finder there stays inactive, and PYTHONPATH is dropped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest
from optuna.trial import TrialState

from conftest import load_study
from nnsearch.config import resources
from nnsearch.runtime.user_code import PYTHONPATH, share_folder

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "nnsearch", "conf", "studies")  # what a build reads


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_subpackage_is_listed_and_conf_and_studies_are_mapped_into_the_package():
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "nnsearch").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml, or the wheel leaves them out"
    assert setuptools["package-dir"] == {"nnsearch._resources.conf": "conf", "nnsearch._resources.studies": "studies"}
    assert {"nnsearch._resources.conf", "nnsearch._resources.studies"} <= listed
    assert (REPO / "conf" / "config.yaml").is_file() and list((REPO / "studies").glob("*.yaml"))


def test_a_checkout_reads_the_repository_folders_and_an_installed_copy_wins(tmp_path, monkeypatch):
    assert resources.conf_dir() == REPO / "conf"
    assert resources.shipped_studies_dir() == REPO / "studies"

    installed = tmp_path / "_resources"
    (installed / "studies").mkdir(parents=True)
    (installed / "conf").mkdir()
    monkeypatch.setattr(resources, "INSTALLED", installed)
    assert resources.shipped_studies_dir() == installed / "studies"
    assert resources.conf_dir() == REPO / "conf"  # a conf/ without config.yaml is not the config tree
    (installed / "conf" / "config.yaml").write_text("seed: 0\n")
    assert resources.conf_dir() == installed / "conf"


@pytest.mark.skipif(sys.flags.safe_path, reason="safe paths (-P, PYTHONSAFEPATH) opt out of the current folder")
def test_the_start_folder_reaches_child_processes_started_elsewhere(tmp_path):
    project = tmp_path / "project"
    (project / "mylab").mkdir(parents=True)
    (project / "mylab" / "__init__.py").write_text("ANSWER = 42\n")
    elsewhere = tmp_path / "elsewhere"  # e.g. the run folder under hydra.job.chdir=true, or a SLURM job's folder
    elsewhere.mkdir()

    environ, path = {PYTHONPATH: "/somewhere/else"}, ["/site"]
    assert share_folder(str(project), environ=environ, path=path) == str(project)
    assert share_folder(str(project), environ=environ, path=path) == str(project)  # once only
    assert path == [str(project), "/site"]
    assert environ[PYTHONPATH] == os.pathsep.join([str(project), "/somewhere/else"])

    env = {**os.environ, PYTHONPATH: environ[PYTHONPATH]}
    child = subprocess.run([sys.executable, "-c", "import mylab; print(mylab.ANSWER)"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0 and child.stdout.strip() == "42", child.stderr


# -- built and installed --------------------------------------------------------------------------


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def _env() -> dict[str, str]:
    """This environment without anything that would import the checkout instead of the installed package."""
    env = {k: v for k, v in os.environ.items() if k not in (PYTHONPATH, "PYTHONHOME", "PYTHONSAFEPATH", "HYDRA_FULL_ERROR")}
    return {**env, "PYTHONWARNINGS": "ignore"}


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _venv_with(wheel: Path, folder: Path) -> Path:
    """A fresh virtual environment with ``wheel`` installed and this environment's dependencies visible; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    # this pip, run by the new interpreter (--python): it sees only the new environment, so nothing here is touched
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)], folder)
    site_packages = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], folder).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site_packages / "_nnsearch_test_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return python


def _where(python: Path, cwd: Path) -> list[Path]:
    """Where ``python`` imports nnsearch from, and the conf and shipped studies folders it reads (resolved)."""
    code = "import nnsearch, nnsearch.config.resources as r; print(nnsearch.__file__, r.conf_dir(), r.shipped_studies_dir(), sep='\\n')"
    return [Path(line).resolve() for line in _run([str(python), "-c", code], cwd).stdout.splitlines()]


@pytest.mark.slow
def test_a_built_wheel_carries_conf_and_studies_and_runs_a_study_with_the_users_own_code(tmp_path):
    src = _copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)], tmp_path)
    (wheel,) = dist.glob("nnsearch-*.whl")
    venv = tmp_path / "venv"
    python = _venv_with(wheel, venv)
    shutil.rmtree(src)  # nothing may come from the sources any more

    work = tmp_path / "work"  # the user's folder: their own study and their own package
    (work / "studies").mkdir(parents=True)
    (work / "mylab").mkdir()
    (work / "mylab" / "__init__.py").write_text("from nnsearch.models.mlp import MLP\n\n\nclass Net(MLP):\n    pass\n")
    (work / "studies" / "tiny.yaml").write_text(
        textwrap.dedent(
            """\
            # @package _global_
            # A two-trial study of the user's own network.
            defaults:
              - override /data: iris
              - override /model: mlp
            model:
              _target_: mylab.Net
            study:
              n_trials: 2
            cv:
              folds: 2
            trainer:
              max_epochs: 1
            search_space:
              model.hidden_dim: {type: int, low: 4, high: 8}
            """
        )
    )

    package, conf, studies = _where(python, work)
    assert all(p.is_relative_to(venv.resolve()) for p in (package, conf, studies)), (package, conf, studies)
    assert (conf / "config.yaml").is_file() and (conf / "data" / "iris.yaml").is_file()
    assert sorted(f.name for f in studies.glob("*.yaml")) == sorted(f.name for f in (REPO / "studies").glob("*.yaml"))

    shipped = sorted(f.stem for f in (REPO / "studies").glob("*.yaml"))
    help_text = _run([str(venv / "bin" / "nnsearch"), "--help"], work).stdout  # the console script
    for name in [*shipped, "tiny"]:
        assert f"\n  {name} " in help_text, name
    assert "mlp, " in help_text and "iris" in help_text  # config groups listed from the installed conf
    composed = _run([str(python), "-m", "nnsearch", "+study=wine_mlp", "--cfg", "job"], work).stdout  # a shipped study composes
    assert "name: wine" in composed and "name: wine_mlp" in composed

    # Two worker processes, started in the run folder (hydra.job.chdir=true), not in `work`: they find
    # mylab only through the PYTHONPATH the CLI passes on.
    overrides = [
        "+study=tiny",
        "launch.workers=2",
        "hydra.job.chdir=true",
        f"study.storage={work / 'optuna.journal'}",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        "final.retrain=false",
        "report.progress=off",
        "report.study_plots=false",
        "tracking.trial_plots=none",
    ]
    result = _run([str(python), "-m", "nnsearch", *overrides], work, timeout=600)
    assert "Study 'tiny' (done)" in result.stdout, result.stdout[-3000:]
    study = load_study(work, "tiny")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_an_editable_install_reads_the_repository_folders(tmp_path):
    src = _copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    code = f"from setuptools import build_meta; build_meta.build_editable({str(dist)!r})"
    _run([sys.executable, "-c", code], src)  # what `pip install -e .` builds, without touching this environment
    (wheel,) = dist.glob("nnsearch-*.whl")
    python = _venv_with(wheel, tmp_path / "venv")

    work = tmp_path / "work"
    work.mkdir()
    assert _where(python, work) == [(src / "nnsearch" / "__init__.py").resolve(), (src / "conf").resolve(), (src / "studies").resolve()]
    assert "\n  digits_mlp " in _run([str(python), "-m", "nnsearch", "--help"], work).stdout
