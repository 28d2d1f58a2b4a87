"""Costs of a network itself, usable as objectives or constraints: size and inference latency.

They depend on the architecture, not on training, so they are measured once per trial on a
freshly built network rather than per fold.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a network is measured: the study's process only names these
    import torch
    from torch import nn

MODEL_METRICS = {"n_params": "minimize", "latency_ms": "minimize"}
LATENCY_BATCH = 256
LATENCY_REPEATS = 7


def n_params(net: nn.Module) -> float:
    """Trainable parameters."""
    return float(sum(p.numel() for p in net.parameters() if p.requires_grad))


def latency_ms(net: nn.Module, x: torch.Tensor) -> float:
    """Median wall time of one forward pass over a batch of ``LATENCY_BATCH`` rows, in ms."""
    import torch

    net.eval()
    batch = x[:LATENCY_BATCH]
    times = []
    with torch.no_grad():
        net(batch)  # warm-up: first-call allocations
        for _ in range(LATENCY_REPEATS):
            start = time.perf_counter()
            net(batch)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(names: set[str], net: nn.Module, x: torch.Tensor) -> dict[str, float]:
    out: dict[str, float] = {}
    if "n_params" in names:
        out["n_params"] = n_params(net)
    if "latency_ms" in names:
        out["latency_ms"] = latency_ms(net, x)
    return out
