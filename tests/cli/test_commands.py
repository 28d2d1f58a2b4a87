"""Commands on a finished study, through the real CLI: leaderboard, export, seeds."""

from __future__ import annotations

import pytest
import yaml

from conftest import TINY, load_study, mlflow_runs

FAST = TINY


@pytest.mark.slow
def test_leaderboard_export_and_seeds_act_on_the_finished_study(run_cli, tmp_path):
    assert run_cli("+study=wine_mlp", *FAST).returncode == 0
    study = load_study(tmp_path, "wine_mlp")
    best = study.best_trial

    # the command line repeats only the study: the trials' own settings come from the study
    shown = run_cli("+study=wine_mlp", "command=leaderboard")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert lines[header + 1].split()[:3] == ["1", str(best.number), f"{best.value:.4f}"]
    assert len(lines) == header + 1 + len(study.trials)

    exported = run_cli("+study=wine_mlp", "command=export", "final.retrain=false", "report.study_plots=false")
    assert exported.returncode == 0, exported.stderr
    study_export, command_export = sorted(tmp_path.glob("outputs/wine_mlp/*/best_config.yaml"))
    assert command_export.read_text() == study_export.read_text()
    assert yaml.safe_load(command_export.read_text())["cv"]["folds"] == 2  # from the study, not the command line

    # seed 0 of `seeds` is the trial's own seed: its CV score repeats the trial
    seeded = run_cli("+study=wine_mlp", "command=seeds", "final.seeds=2")
    assert seeded.returncode == 0, seeded.stderr
    table = next(tmp_path.glob("outputs/wine_mlp/*/seeds.csv")).read_text().splitlines()
    columns = table[0].split(",")
    first_seed = dict(zip(columns, table[1].split(",")))
    assert float(first_seed["cv/accuracy"]) == pytest.approx(best.value, abs=1e-5)
    assert [row.split(",")[0] for row in table[1:]] == [str(int(first_seed["seed"])), str(int(first_seed["seed"]) + 1), "mean", "std"]
    assert "mean ± std over seeds" in seeded.stdout and "test/accuracy" in seeded.stdout
    client, parents, _ = mlflow_runs(tmp_path, "wine_mlp")
    runs = client.search_runs([parents[0].info.experiment_id], filter_string="tags.`nnsearch.role` = 'seeds'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and "seeds/cv/accuracy" in runs[0].data.metrics


def test_commands_fail_in_one_line_for_an_unknown_command_or_study(run_cli):
    unknown = run_cli("+study=wine_mlp", "command=frobnicate")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == ["nnsearch: error: Unknown command 'frobnicate'; choose one of run, storage_server, leaderboard, export, seeds, final, make_example_data."]
    missing = run_cli("+study=wine_mlp", "command=leaderboard")
    assert missing.returncode == 2 and "No study 'wine_mlp'" in missing.stderr and "Traceback" not in missing.stderr


def test_help_names_every_command():
    from nnsearch.cli.commands import COMMANDS
    from nnsearch.cli.help import help_text

    text = help_text()
    assert all(name in text for name in COMMANDS), [name for name in COMMANDS if name not in text]
