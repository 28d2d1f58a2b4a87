"""Command line: ``python -m nnsearch +study=NAME [Hydra overrides]``.

Only Hydra is imported at start-up; torch, Lightning, Optuna and MLflow load when a study
actually runs, so ``--help`` and config errors answer quickly.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from nnsearch.runtime import fast_exit, fork_server, startup_gc
from nnsearch.runtime.user_code import share_folder

fast_exit.arm()  # before Hydra and the libraries it imports register their exit handlers
IMPORTED = time.time()  # when this module began: the interpreter started a moment before
INTERPRETER_START_S = 5.0  # a process older than this when this module began was another program first (a shell's exec)
if __name__ == "__main__":  # python -m nnsearch: the fold processes' imports begin before Hydra's (else in main())
    startup_gc.hold()  # no full collection while the imports run (released once the study is open, or a command starts)
    share_folder()  # the user's own packages (./mylab) importable here and in every process the study starts
    fork_server.boot_for(sys.argv[1:])

import hydra  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from nnsearch.config.resources import conf_dir  # noqa: E402
from nnsearch.config.studies import register_studies, requested_studies  # noqa: E402

CONF_DIR = str(conf_dir())  # the repository's conf/, or the installed package's copy (nnsearch.config.resources)
FULL_ERROR = "HYDRA_FULL_ERROR"  # "1": Hydra raises composition errors instead of printing them
_composing = {"lent": False}  # main() set FULL_ERROR for the composition only: the task unsets it


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _run(cfg: DictConfig) -> None:
    from nnsearch.cli.main import run_study_cli
    from nnsearch.config.credentials import protect_job

    protect_job(cfg)  # before anything prints or writes: passwords masked, .hydra/ files included
    if _composing["lent"]:  # composed: from here on Hydra reports errors its own way, here and in child processes
        os.environ.pop(FULL_ERROR, None)
    code = run_study_cli(cfg, started=_process_started())
    if code:
        sys.exit(code)


def _process_started() -> float | None:
    """When this command was launched (epoch seconds): the study's clock includes the imports a user waits for.

    The process' creation time, unless it is far older than this module: a shell that ``exec``s the
    last command of ``a && b`` hands its own process, created before ``a`` ran, to ``b``; then the
    time this module was imported (a few hundredths of a second late) stands for the launch.
    """
    try:
        import psutil

        created = psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - a sandbox without /proc: the clock starts at the study instead
        return None
    return created if IMPORTED - created <= INTERPRETER_START_S else IMPORTED


CONFIG_PATH_FLAGS = ("--config-path", "-cp")


def absolute_config_path(argv: list[str]) -> list[str]:
    """``--config-path DIR`` made absolute against the current folder.

    Hydra resolves a relative primary config path against the folder of the entry point's
    module (here, the installed package), so the README's ``--config-path outputs/...`` would
    not be found. A user means the folder they run from.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        for flag in CONFIG_PATH_FLAGS:
            if arg == flag and i + 1 < len(out):
                out[i + 1] = _absolute(out[i + 1])
            elif arg.startswith(flag + "="):
                out[i] = f"{flag}={_absolute(arg[len(flag) + 1:])}"
    return out


def _absolute(path: str) -> str:
    return path if "://" in path or os.path.isabs(path) else str(Path(path).absolute())


def main() -> None:
    """The CLI; once it is done, the process leaves without the interpreter's teardown (:mod:`nnsearch.runtime.fast_exit`)."""
    fast_exit.command()
    startup_gc.hold()
    try:
        _main()
    except SystemExit as stop:
        fast_exit.record(stop.code)
        raise
    finally:
        fork_server.stop()
        startup_gc.release(freeze=False)
    fast_exit.record(0)


def _main() -> None:
    from nnsearch.cli.help import help_text, wants_help

    if wants_help():  # Hydra's help copies the config store once per config group (slow; grows with studies)
        print(help_text(), end="")
        return
    sys.argv = absolute_config_path(sys.argv)
    share_folder()  # the user's own packages (./mylab) importable here and in every process the study starts
    fork_server.boot_for(sys.argv[1:])  # the fold processes' imports, on another core, from now on
    register_studies(requested_studies(sys.argv[1:]))
    _composing["lent"] = FULL_ERROR not in os.environ
    if _composing["lent"]:
        os.environ[FULL_ERROR] = "1"
    try:
        _run()
    except (HydraException, OmegaConfBaseException) as err:
        if not _composing["lent"] or FULL_ERROR not in os.environ:  # the user's own FULL_ERROR, or raised after composing
            raise
        from nnsearch.cli.config_errors import describe

        print(f"nnsearch: error: {describe(err)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
