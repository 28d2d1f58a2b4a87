"""Small building blocks shared by the networks."""

from __future__ import annotations

from torch import nn

from nnsearch.errors import NNSearchError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise NNSearchError(f"Unknown activation '{name}'; choose one of {', '.join(ACTIVATIONS)}.") from None


def check_positive(**values: float) -> None:
    """Reject non-positive sizes with the offending name in the message."""
    for name, value in values.items():
        if value is None or value < 1:
            raise NNSearchError(f"model.{name} must be at least 1, got {value}.")


def check_dropout(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise NNSearchError(f"model.dropout must be in [0, 1), got {p}.")


def check_choice(name: str, value: str, choices: tuple[str, ...] | dict) -> None:
    if value not in choices:
        raise NNSearchError(f"Unknown model.{name} '{value}'; choose one of {', '.join(choices)}.")


def sequence_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int]:
    """(steps, features) of a sequence sample, or a clear error for tabular or image data."""
    if len(input_shape) != 2:
        raise NNSearchError(
            f"model={model} needs sequences shaped (steps, features), got samples of shape {tuple(input_shape)}; "
            "use sequence data such as data=digits_sequence, data=sine_forecast or data=npz_sequence."
        )
    return int(input_shape[0]), int(input_shape[1])


def token_steps(input_shape: tuple[int, ...], model: str) -> int:
    """Tokens per sample of token-id data (``model.vocab_size`` set), or a clear error for other data."""
    if len(input_shape) != 1:
        raise NNSearchError(
            f"model.vocab_size is set, so model={model} reads token ids shaped (tokens,), got samples of shape {tuple(input_shape)}; "
            "use data=text, or leave model.vocab_size null for sequences of features."
        )
    return int(input_shape[0])
