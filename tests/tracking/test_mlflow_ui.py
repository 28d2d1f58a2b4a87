"""The MLflow UI, started on a study's store, shows the study's runs and a trial's artifacts.

Checked the way a user looks: headless Chromium (Debian's ``chromium``) renders the pages; the
test reads the rendered DOM and decodes the screenshots. The README's test command (and ``.ci/run``)
installs Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, mlflow_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(autouse=True)
def _chromium() -> None:
    """The README's test command installs Chromium: without it this is a failure to set up, not a skip."""
    assert CHROMIUM is not None, "Chromium is not installed: run the README's test command (apt-get install chromium)"
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--virtual-time-budget=20000",  # let the single-page app fetch and render its data
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_ui(tmp_path):
    """``mlflow server`` on the study's store (own process group: its workers go with it)."""
    port = _free_port()
    log = open(tmp_path / "mlflow-server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "mlflow-server.log").read_text()[-2000:]
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _browse(url: str, tmp_path: Path, name: str) -> tuple[str, np.ndarray]:
    """The rendered DOM of ``url`` and a screenshot of it (as an RGB array)."""
    profile = tmp_path / f"chromium-{name}"
    shot = tmp_path / f"{name}.png"
    dom = subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}-dom", "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    subprocess.run([CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}-shot", f"--screenshot={shot}", url], capture_output=True, timeout=120)
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"))
    return dom, pixels


def _text(dom: str) -> str:
    """The page's visible words, markup removed."""
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


def _not_blank(pixels: np.ndarray) -> None:
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1200
    assert pixels.std() > 10, "the page rendered blank"


@pytest.mark.slow
def test_mlflow_ui_shows_the_study_runs_and_a_trials_artifacts(run_cli, tmp_path, mlflow_ui):
    result = run_cli("+study=wine_mlp", *TINY, "final.retrain=false")
    assert result.returncode == 0, result.stderr
    client, parents, children = mlflow_runs(tmp_path, "wine_mlp")
    experiment = parents[0].info.experiment_id
    trial = sorted(children, key=lambda r: r.data.tags["optuna.trial_number"])[0]

    dom, pixels = _browse(f"{mlflow_ui}/#/experiments/{experiment}/runs", tmp_path, "runs")
    _not_blank(pixels)
    assert ">wine_mlp<" in dom  # the study's parent run, its trials nested under it
    assert f"{1 + len(children)} matching runs" in _text(dom)

    dom, pixels = _browse(f"{mlflow_ui}/#/experiments/{experiment}/runs/{trial.info.run_id}/artifacts", tmp_path, "artifacts")
    _not_blank(pixels)
    assert trial.info.run_name in dom
    for name in ("plots", "tables", "config.yaml"):
        assert f">{name}<" in dom, name

    dom, pixels = _browse(f"{mlflow_ui}/#/experiments/{experiment}/runs/{trial.info.run_id}/artifacts/plots/learning_curves.png", tmp_path, "plot")
    _not_blank(pixels)
    assert 'alt="plots/learning_curves.png" src="blob:' in dom  # the PNG was fetched and shown


def test_the_printed_link_opens_the_trials_best_first_with_their_objective(run_cli, tmp_path, mlflow_ui):
    result = run_cli("+study=wine_mlp", *TINY, "study.n_trials=3")
    assert result.returncode == 0, result.stderr
    link = re.search(r"then open (http://127\.0\.0\.1:5000/\S+)", result.stdout)
    assert link, result.stdout[-2000:]
    client, parents, children = mlflow_runs(tmp_path, "wine_mlp")
    assert client.get_experiment(parents[0].info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"

    dom, pixels = _browse(link[1].replace("http://127.0.0.1:5000", mlflow_ui), tmp_path, "trials")
    _not_blank(pixels)
    text = _text(dom)
    assert "Model training" in text and "Overview" not in text  # the runs table, not the GenAI overview
    assert "cv/accuracy" in text  # the objective's column is shown without choosing it
    complete = sorted((c for c in children if c.data.tags["state"] == "COMPLETE"), key=lambda c: -c.data.metrics["cv/accuracy"])
    names = [c.info.run_name for c in complete]
    assert [n for n in re.findall(r"trial-\d{4}", text) if n in names][: len(names)] == names  # best first
    for run in complete:
        assert f"{run.data.metrics['cv/accuracy']:.4f}"[:5] in text  # each trial's objective value on the first screen
