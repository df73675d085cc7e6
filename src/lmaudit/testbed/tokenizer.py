"""A byte-level BPE tokenizer trained from scratch, saved like any Hugging Face tokenizer."""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def train_tokenizer(texts: Iterable[str], *, vocab_size: int):
    """Train a GPT-2-style byte-level BPE on ``texts``.

    Byte-level, so any UTF-8 text encodes without unknown tokens. It adds no special
    tokens by itself (like GPT-2); lmaudit's scoring policy prepends BOS explicitly.
    Training is deterministic for the same texts and vocabulary size.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with distinct pad, BOS and EOS tokens.
    """
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],  # ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
