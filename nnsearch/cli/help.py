"""``python -m nnsearch --help`` without composing any config.

Why: Hydra's own ``--help`` composes the config and then lists every config group by building a
fresh config repository per group, each a deep copy of the ConfigStore, where every study file is
registered. Its cost grows with the number of studies times the number of groups (about 1 s with 5
studies on an idle 2-core machine, 2.5-3 s with 12 under load). This help reads directory listings
instead; the composed config stays one flag away (``--cfg job``), and ``--hydra-help`` still
reaches Hydra's own help.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from nnsearch.config.resources import conf_dir

CONF_DIR = conf_dir()
HELP_FLAGS = ("-h", "--help")

SUMMARY_CHARS = 110  # a study's line in the list: whole sentences up to about this length
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`\"'])")  # ". Next", not "e.g. model" or "0.5"

USAGE = """\
nnsearch: hyperparameter search for neural networks (Hydra + Lightning + Optuna + MLflow)

Usage:
  python -m nnsearch +study=NAME [KEY=VALUE ...]     run (or resume) a study
  python -m nnsearch +study=NAME --cfg job           print the composed config without running
  python -m nnsearch +study=NAME launch.workers=2    run it in 2 worker processes (launch.gpus=[0,1] for GPUs)
  python -m nnsearch +study=NAME command=X           X: leaderboard, export (best_config.yaml), seeds (the best
                                                     config over final.seeds seeds), final (retrain and log the
                                                     model), make_example_data (an image-folder study's files)
  python -m nnsearch command=storage_server study.storage=postgresql://...   gRPC storage proxy for many workers
  python -m nnsearch --hydra-help                     Hydra's own options (multirun, logging, ...)

Any config key can be overridden, e.g. study.n_trials=50 cv.folds=5 trainer.max_epochs=30;
a group is swapped with GROUP=OPTION, e.g. model=cnn optimizer=sgd pruner=none.
"""


def _summary(path: Path) -> str:
    """What a study file says it is: the whole first sentence of its first comment paragraph
    (after any ``# @package`` directive), and the next sentences while they fit in
    ``SUMMARY_CHARS``. Comment lines wrap mid-sentence, so a paragraph is joined before it is
    split into sentences; a paragraph ends at a blank comment line or the first YAML line."""
    paragraph: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("# @"):
            continue
        if not line.startswith("#"):
            if line or paragraph:
                break
            continue
        text = line.lstrip("#").strip()
        if not text:
            if paragraph:
                break
            continue
        paragraph.append(text)
    sentences = _SENTENCE_END.split(" ".join(paragraph))
    summary = sentences[0]
    for sentence in sentences[1:]:
        if len(summary) + 1 + len(sentence) > SUMMARY_CHARS:
            break
        summary += " " + sentence
    return summary


def help_text() -> str:
    from nnsearch.config.studies import study_files

    lines = [USAGE, "Studies (+study=NAME; files in studies/ here or in ./studies):"]
    studies = study_files()
    width = max((len(n) for n in studies), default=0)
    lines += [f"  {name:<{width}}  {_summary(file)}".rstrip() for name, file in studies.items()] or ["  (none found)"]
    lines.append("\nConfig groups (GROUP=OPTION):")
    for group in sorted(p for p in CONF_DIR.iterdir() if p.is_dir()):
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines.append(f"  {group.name:<10} {', '.join(options)}")
    return "\n".join(lines) + "\n"


def wants_help(argv: list[str] | None = None) -> bool:
    return any(arg in HELP_FLAGS for arg in (sys.argv[1:] if argv is None else argv))
