"""Sequence models on token ids (data=text): an embedding front, and padding that changes nothing."""

from __future__ import annotations

import pytest
import torch

from nnsearch.errors import NNSearchError
from nnsearch.models.recurrent import Recurrent
from nnsearch.models.transformer import TransformerEncoder

SHORT = torch.tensor([[5, 9, 3], [7, 2, 8]])
PADDED = torch.cat([SHORT, torch.zeros(2, 4, dtype=torch.long)], dim=1)  # the same texts padded to 7 tokens


@pytest.mark.parametrize("readout", ["last", "mean", "max"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_models_skip_padding(cell, readout):
    torch.manual_seed(0)
    short = Recurrent((3,), 2, cell=cell, readout=readout, vocab_size=10, embedding_dim=8, bidirectional=True).eval()
    padded = Recurrent((7,), 2, cell=cell, readout=readout, vocab_size=10, embedding_dim=8, bidirectional=True).eval()
    padded.load_state_dict(short.state_dict())
    assert short.embedding.weight.shape == (10, 8)
    assert torch.allclose(short(SHORT), padded(PADDED), atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls", "last"])
def test_the_transformer_ignores_padding(pooling):
    torch.manual_seed(0)
    settings = dict(vocab_size=10, d_model=16, n_heads=2, n_layers=2, ff_dim=32, dropout=0.0, pooling=pooling)
    short, padded = TransformerEncoder((3,), 2, **settings).eval(), TransformerEncoder((7,), 2, **settings).eval()
    # sinusoidal position codes of the first steps agree whatever the length; the rest is copied
    padded.load_state_dict({k: v for k, v in short.state_dict().items() if k != "position"}, strict=False)
    assert torch.allclose(short(SHORT), padded(PADDED), atol=1e-5)
    assert torch.isfinite(padded(torch.zeros(2, 7, dtype=torch.long))).all()  # an all-padding text too


def test_token_models_refuse_feature_sequences():
    with pytest.raises(NNSearchError, match=r"model.vocab_size is set, so model=lstm reads token ids shaped \(tokens,\), got samples of shape \(8, 8\)"):
        Recurrent((8, 8), 2, vocab_size=10)
