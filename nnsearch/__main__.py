"""Command line: ``python -m nnsearch +study=NAME [Hydra overrides]``.

Only Hydra is imported at start-up; torch, Lightning, Optuna and MLflow load when a study
actually runs, so ``--help`` and config errors answer quickly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nnsearch.studies import register_studies

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _run(cfg: DictConfig) -> None:
    from nnsearch.app import run_study_cli

    code = run_study_cli(cfg)
    if code:
        sys.exit(code)


def main() -> None:
    from nnsearch.cli_help import help_text, wants_help

    if wants_help():  # Hydra's help copies the config store once per config group (slow; grows with studies)
        print(help_text(), end="")
        return
    register_studies()
    _run()


if __name__ == "__main__":
    main()
