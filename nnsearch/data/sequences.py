"""Time series generated locally for forecasting: windows of a series and the value that follows.

Nothing is downloaded; the same ``seed`` always gives the same data. Each sample is an
independent series: its first ``steps`` values (shape ``(steps, 1)``) are the input and the value
``horizon`` steps after the window is the regression target. Observation noise is on inputs and
target alike, so ``noise`` is the RMSE floor no forecaster can beat.
"""

from __future__ import annotations

import numpy as np

from nnsearch.data.dataset import Dataset, Task
from nnsearch.errors import NNSearchError

KINDS = ("sine", "ar")


def load_series(
    kind: str = "sine",
    *,
    n_samples: int = 1000,
    steps: int = 32,
    horizon: int = 1,
    noise: float = 0.1,
    seed: int = 0,
    scaler: str = "standard",
    batch_size: int = 64,
) -> Dataset:
    """Generate ``n_samples`` windows of ``kind`` series for a regression (forecasting) task.

    Args:
        kind: ``sine``: amplitude, period (6-24 steps) and phase drawn per series; ``ar``: a stable
            AR(2) process whose two coefficients are drawn per series.
        steps: length of the input window.
        horizon: how many steps after the window the target lies (1 = next value).
        noise: standard deviation of the Gaussian observation noise.

    Example:
        ``load_series("sine", n_samples=500, steps=16).X.shape == (500, 16, 1)``
    """
    if kind not in KINDS:
        raise NNSearchError(f"Unknown data.kind '{kind}'; choose one of {', '.join(KINDS)}.")
    for name, value in (("n_samples", n_samples), ("steps", steps), ("horizon", horizon)):
        if not isinstance(value, int) or value < 1:
            raise NNSearchError(f"data.{name} must be a positive integer, got {value!r}.")
    if noise < 0:
        raise NNSearchError(f"data.noise must be at least 0, got {noise}.")
    rng = np.random.default_rng(seed)
    length = steps + horizon
    clean = _sine(rng, n_samples, length) if kind == "sine" else _autoregressive(rng, n_samples, length)
    series = clean + noise * rng.standard_normal(clean.shape)
    X = series[:, :steps, None].astype(np.float32)
    y = series[:, -1].astype(np.float32)
    return Dataset(
        name=f"{kind}_series", X=X, y=y, task=Task.REGRESSION, feature_names=("value",), scaler=scaler, batch_size=batch_size
    )


def _sine(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    amplitude = rng.uniform(0.5, 1.5, (n, 1))
    period = rng.uniform(6.0, 24.0, (n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1))
    t = np.arange(length)[None, :]
    return amplitude * np.sin(2 * np.pi * t / period + phase)


def _autoregressive(rng: np.random.Generator, n: int, length: int, burn_in: int = 50) -> np.ndarray:
    """x_t = a1 x_{t-1} + a2 x_{t-2} + e_t with (a1, a2) inside the stationarity triangle."""
    a2 = rng.uniform(-0.8, 0.2, n)
    a1 = rng.uniform(-1, 1, n) * (1 - a2) * 0.95  # |a1| < 1 - a2 keeps the process stationary
    x = np.zeros((n, length + burn_in))
    shocks = rng.standard_normal((n, length + burn_in))
    for t in range(2, length + burn_in):
        x[:, t] = a1 * x[:, t - 1] + a2 * x[:, t - 2] + shocks[:, t]
    out = x[:, burn_in:]
    return out / out.std(axis=1, keepdims=True)
