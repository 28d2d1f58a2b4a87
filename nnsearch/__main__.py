"""Command line: ``python -m nnsearch +study=NAME [Hydra overrides]``.

Only Hydra is imported at start-up; torch, Lightning, Optuna and MLflow load when a study
actually runs, so ``--help`` and config errors answer quickly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nnsearch.studies import register_studies

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
FULL_ERROR = "HYDRA_FULL_ERROR"  # set: Hydra raises composition errors instead of printing them


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _run(cfg: DictConfig) -> None:
    from nnsearch.app import run_study_cli

    _composed.append(True)
    if _own_full_error:  # from here on Hydra reports errors its own way again, in this process and its children
        os.environ.pop(FULL_ERROR, None)

    code = run_study_cli(cfg)
    if code:
        sys.exit(code)


def main() -> None:
    from nnsearch.cli_help import help_text, wants_help

    if wants_help():  # Hydra's help copies the config store once per config group (slow; grows with studies)
        print(help_text(), end="")
        return
    register_studies()
    global _own_full_error
    _own_full_error = FULL_ERROR not in os.environ
    if _own_full_error:
        os.environ[FULL_ERROR] = "1"
    try:
        _run()
    except Exception as err:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if _composed or not _own_full_error or not isinstance(err, HydraException | OmegaConfBaseException):
            raise
        from nnsearch.config_errors import describe

        print(f"nnsearch: error: {describe(err)}", file=sys.stderr)
        sys.exit(2)


_composed: list[bool] = []  # the task function started: the command line composed into a config
_own_full_error = False


if __name__ == "__main__":
    main()
