"""data=text: texts become token ids through a tokenizer fitted on each fold's training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nnsearch.cv.splits import make_splits, prepare_fold
from nnsearch.data.dataset import Task
from nnsearch.data.example_text import make_sentiment_rows
from nnsearch.data.text import PAD, UNKNOWN, TextTokenizer, load_text
from nnsearch.errors import NNSearchError


def _reviews(tmp_path, texts, labels, name="reviews.csv"):
    path = tmp_path / name
    frame = pd.DataFrame({"review": texts, "stars": labels})
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return str(path)


def test_the_word_tokenizer_never_sees_validation_rows(tmp_path):
    texts = [f"common words here train{i}" for i in range(10)] + [f"common words here onlyval{i}" for i in range(10)]
    data = load_text(_reviews(tmp_path, texts, [i % 2 for i in range(20)]), "review", "stars", max_length=6)
    train_idx, val_idx = np.arange(10), np.arange(10, 20)
    fold = prepare_fold(data, 0, train_idx, val_idx)
    vocabulary = fold.featurizer.vocabulary_
    assert {"common", "words", "here", "train0"} <= set(vocabulary)
    assert not any(word.startswith("onlyval") for word in vocabulary)
    # the validation-only word is unknown, the shared ones are known, the rest is padding
    assert fold.x_val[0].tolist() == [vocabulary["common"], vocabulary["words"], vocabulary["here"], UNKNOWN, PAD, PAD]
    assert fold.x_train.dtype == fold.x_val.dtype == torch.int64


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_subword_tokenizers_train_on_the_fold_and_pad_to_max_length(kind):
    train = ["the film was good", "the plot was bad", "a lovely film", "a dull plot"] * 5
    tokenizer = TextTokenizer(max_length=8, vocab_size=60, tokenizer=kind).fit(train)
    ids = tokenizer.transform(["the film was good", "a quixotic zeppelin was good"])
    assert ids.shape == (2, 8) and ids.dtype == np.int64
    assert ids.max() < 60 and ids[0, -1] == PAD  # four words need fewer than 8 sub-words
    assert not any("quixotic" in token or "zeppelin" in token for token in tokenizer.vocabulary_)


def test_texts_are_truncated_and_ids_stay_below_the_vocabulary_cap():
    texts = [" ".join(f"w{i}_{j}" for j in range(30)) for i in range(10)]
    ids = TextTokenizer(max_length=5, vocab_size=12).fit(texts).transform(texts)
    assert ids.shape == (10, 5) and ids.max() < 12 and (ids > PAD).all()


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.tsv", "reviews.parquet"])
def test_text_files_load_by_extension_with_their_target_task(tmp_path, name):
    texts, labels = make_sentiment_rows(40, seed=1)
    data = load_text(_reviews(tmp_path, texts, labels, name), "review", "stars", max_length=10)
    assert data.task is Task.BINARY and data.classes == ("negative", "positive") and data.input_shape == (10,)
    stars = load_text(_reviews(tmp_path, texts, np.linspace(1, 5, 40), name), "review", "stars")
    assert stars.task is Task.REGRESSION


def test_a_missing_text_column_and_empty_texts_are_refused(tmp_path):
    path = _reviews(tmp_path, ["good film", "bad film"], [1, 0])
    with pytest.raises(NNSearchError, match="Text column 'comment' is not in reviews.csv; its columns are: review, stars"):
        load_text(path, "comment", "stars")
    path = _reviews(tmp_path, ["good film", "  ", "bad"], [1, 0, 1])
    with pytest.raises(NNSearchError, match=r"Text column 'review' of reviews.csv has 1 empty text\(s\) \(first in data row 2\)"):
        load_text(path, "review", "stars")


def test_every_fold_fits_its_own_tokenizer(tmp_path):
    texts, labels = make_sentiment_rows(60, seed=2)
    texts = [f"{t} fold_marker_{i}" for i, t in enumerate(texts)]
    data = load_text(_reviews(tmp_path, texts, labels), "review", "stars", max_length=20)
    for k, (train_idx, val_idx) in enumerate(make_splits(data, folds=3, seed=0)):
        vocabulary = prepare_fold(data, k, train_idx, val_idx).featurizer.vocabulary_
        assert {f"fold_marker_{i}" for i in train_idx} <= set(vocabulary)
        assert not {f"fold_marker_{i}" for i in val_idx} & set(vocabulary)
