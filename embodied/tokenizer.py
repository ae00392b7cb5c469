"""A small byte-level BPE tokenizer for the tiny model, trained on the project's own plan corpus
with Hugging Face `tokenizers` and saved as a `PreTrainedTokenizerFast` beside the checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, out: str | Path | None = None):
    """Byte-level BPE (no unknown characters, ever); ids 0-3 are <pad> <s> </s> <unk>, matching
    the tiny Llama's pad/bos/eos ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS)
    if out is not None:
        fast.save_pretrained(str(out))
    return fast
