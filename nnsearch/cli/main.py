"""The command line's main job: a study run or a command, with every user-fixable problem as one line and an exit code."""

from __future__ import annotations

import signal
import sys

from omegaconf import DictConfig

from nnsearch.errors import NNSearchError


def run_study_cli(cfg: DictConfig, *, started: float | None = None) -> int:
    """Run the study; a user-fixable problem becomes one line on stderr and exit code 2.

    ``started``: when the command was launched (its progress clock and "done in" count from there).
    """
    from nnsearch.config.studies import STUDY_FILE_ERROR

    try:
        if cfg.get(STUDY_FILE_ERROR):
            raise NNSearchError(cfg[STUDY_FILE_ERROR])
        command = cfg.get("command", "run")
        if command != "run":
            from nnsearch.runtime import startup_gc

            startup_gc.release()  # held back for a study's imports (nnsearch.__main__): a command collects as usual
        if command == "run":
            from nnsearch.launch.run import run_study

            run_study(cfg, started=started)
        elif command == "storage_server":
            from nnsearch.launch.workers import serve_storage

            serve_storage(cfg)
        else:
            from nnsearch.cli.commands import run_command

            run_command(cfg)
    except NNSearchError as err:
        from nnsearch.cli.run_dir import remove_unused_run_dir

        remove_unused_run_dir()
        print(f"nnsearch: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as stop:
        print("nnsearch: interrupted; run the same command again to resume the study.", file=sys.stderr)
        return 128 + (stop.args[0] if stop.args and isinstance(stop.args[0], int) else signal.SIGINT)
    return 0
