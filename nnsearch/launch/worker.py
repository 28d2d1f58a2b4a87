"""Entry point of one worker process of a launched study: ``python -m nnsearch.launch.worker CONFIG``.

The launcher writes the study's resolved config to a YAML file (readable by its owner only, with
passwords masked: URLs that carry one come in the environment, see :mod:`nnsearch.config.credentials`)
and starts workers on it; each opens the shared study and the MLflow parent run and runs trials
until the study has ``study.n_trials``.
"""

from __future__ import annotations

import logging
import sys

from omegaconf import OmegaConf


def run(config_path: str) -> int:
    from nnsearch.launch.run import run_worker
    from nnsearch.config.credentials import from_environment, guard_output
    from nnsearch.errors import NNSearchError
    from nnsearch.config.studies import register_resolvers

    register_resolvers()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][worker %(process)d][%(levelname)s] - %(message)s")
    guard_output()
    cfg = OmegaConf.load(config_path)
    try:
        from_environment(cfg, source=config_path)
        run_worker(cfg)
    except NNSearchError as err:
        print(f"nnsearch worker: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: python -m nnsearch.launch.worker CONFIG.yaml", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(sys.argv[1]))


if __name__ == "__main__":
    main()
