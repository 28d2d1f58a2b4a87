"""Free text as token ids: a tokenizer fitted on a fold's training texts, and the text-file loader.

:class:`TextTokenizer` is a scikit-learn transformer, so a fold fits a clone of it on its training
rows only (:func:`nnsearch.cv.splits.prepare_fold`) and the final model carries the fitted one. Its
vocabulary is learned by a library: scikit-learn's ``CountVectorizer`` for ``word`` (its analyzer
splits the texts, its ``max_features`` keeps the most frequent words), the ``tokenizers`` package's
BPE or WordPiece trainer for ``bpe``/``wordpiece``, trained from the fold's texts (nothing is
downloaded). Ids 0 and 1 are padding and unknown; every id is below ``vocab_size``, a fixed cap, so
the model's embedding has the same size in every fold and in the final model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from nnsearch.errors import NNSearchError

PAD, UNKNOWN = 0, 1  # the ids every tokenizer reserves; models mask PAD
TOKENIZERS = ("word", "bpe", "wordpiece")


class TextTokenizer(TransformerMixin, BaseEstimator):
    """Texts -> int64 token ids of shape (N, ``max_length``), padded with 0 and truncated at the end.

    Args:
        max_length: tokens per text after padding/truncation.
        vocab_size: ids are below it (0 pad, 1 unknown, then the learned vocabulary).
        tokenizer: ``word`` (lower-cased words), ``bpe`` or ``wordpiece`` (sub-words).
        lowercase: lower-case texts before tokenizing.
    """

    def __init__(self, max_length: int = 64, vocab_size: int = 5000, tokenizer: str = "word", lowercase: bool = True) -> None:
        self.max_length = max_length
        self.vocab_size = vocab_size
        self.tokenizer = tokenizer
        self.lowercase = lowercase

    def fit(self, texts: Sequence[str], y: Any = None) -> TextTokenizer:
        texts = _texts(texts)
        if self.tokenizer == "word":
            from sklearn.feature_extraction.text import CountVectorizer

            counter = CountVectorizer(lowercase=self.lowercase, max_features=self.vocab_size - 2, token_pattern=r"(?u)\b\w+\b")
            counter.fit(texts)
            self.analyzer_ = counter.build_analyzer()
            self.vocabulary_ = {word: index + 2 for index, word in enumerate(sorted(counter.vocabulary_))}
        else:
            self.subwords_ = _train_subwords(texts, self.tokenizer, self.vocab_size, self.lowercase, self.max_length)
            self.vocabulary_ = {token: index for token, index in self.subwords_.get_vocab().items() if index > UNKNOWN}
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        texts = _texts(texts)
        ids = np.full((len(texts), self.max_length), PAD, dtype=np.int64)
        if self.tokenizer == "word":
            for row, text in enumerate(texts):
                tokens = [self.vocabulary_.get(word, UNKNOWN) for word in self.analyzer_(text)[: self.max_length]]
                ids[row, : len(tokens)] = tokens
        else:
            for row, encoding in enumerate(self.subwords_.encode_batch(texts)):
                ids[row] = encoding.ids
        return ids


def _texts(texts: Any) -> list[str]:
    """A list of str from a 1-D sequence of texts or a one-column table (a final model's DataFrame input)."""
    array = np.asarray(texts, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"TextTokenizer takes one text per row, got input of shape {array.shape}.")
    return [str(t) for t in array]


def _train_subwords(texts: list[str], kind: str, vocab_size: int, lowercase: bool, max_length: int) -> Any:
    """A ``tokenizers`` BPE or WordPiece model trained on ``texts``, padding and truncating to ``max_length``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    special = ["[PAD]", "[UNK]"]  # ids 0 and 1: trainers number special tokens first
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()] if lowercase else [normalizers.NFKC()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.enable_padding(pad_id=PAD, pad_token="[PAD]", length=max_length)
    tokenizer.enable_truncation(max_length)
    return tokenizer


def load_text(
    path: str,
    text: str,
    target: str,
    *,
    task: str = "auto",
    max_length: int = 64,
    vocab_size: int = 5000,
    tokenizer: str = "word",
    lowercase: bool = True,
    batch_size: int = 64,
) -> Any:
    """A CSV, TSV or Parquet file with a free-text column and a target column, for sequence models."""
    from nnsearch.data.dataset import Dataset, encode_target, infer_task
    from nnsearch.data.files import check_text_column, read_table, target_values

    if tokenizer not in TOKENIZERS:
        raise NNSearchError(f"data.tokenizer must be one of {', '.join(TOKENIZERS)}; got '{tokenizer}'.")
    for name, value, least in (("data.max_length", max_length, 1), ("data.vocab_size", vocab_size, 3)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise NNSearchError(f"{name} must be an integer of at least {least}, got {value!r}.")
    if tokenizer != "word":
        import importlib.util

        if importlib.util.find_spec("tokenizers") is None:
            raise NNSearchError(f"data.tokenizer={tokenizer} needs the tokenizers package: pip install 'nnsearch[text]' (or use data.tokenizer=word).")
    frame, file = read_table(path, "text")
    check_text_column(text, list(frame.columns), file.name)
    texts = frame[text]
    blank = texts.isna() | (texts.astype(str).str.strip() == "")
    if blank.any():
        first = int(np.flatnonzero(blank.to_numpy())[0])
        raise NNSearchError(
            f"Text column '{text}' of {file.name} has {int(blank.sum())} empty text(s) (first in data row {first + 1}); drop or fill those rows."
        )
    y_raw = target_values(frame, target, file.name)
    kind = infer_task(y_raw, task)
    y, classes = encode_target(y_raw, kind)
    return Dataset(
        name=file.stem,
        X=texts.astype(str).to_numpy(dtype=object),
        y=y,
        task=kind,
        classes=classes,
        feature_names=(str(text),),
        scaler="none",
        batch_size=batch_size,
        featurizer=TextTokenizer(max_length=max_length, vocab_size=vocab_size, tokenizer=tokenizer, lowercase=lowercase),
        sample_shape=(max_length,),
        raw_columns=(str(text),),
    )
