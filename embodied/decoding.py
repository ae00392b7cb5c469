"""Greedy decoding on a static KV cache: how `EmbodiedGPT.generate` writes plans and answers.

Why not `transformers`' `generate`: it re-derives masks, positions and stopping state from Python at every token
and grows a dynamic cache, which costs more than the token itself on a small model (CPU) and keeps a 7B model far
from its memory-bandwidth floor on a GPU (docs/BENCHMARKS.md). Here the cache is allocated once at its final
length, the adapter's prefix keys and values are written into it once per call, the prompt (visual queries and
text) is prefilled in one forward pass, and each new token is one forward pass of fixed shapes: the same
tensors every step, so `torch.compile` (CUDA graphs on a GPU) can capture it. Greedy tokens are the same as
`generate`'s (tests/test_decoding.py checks it token for token).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

BUCKET = 64  # cache lengths are rounded up to a multiple of this, so prompts of similar length share a cache


def prefix_cache(llm: nn.Module, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """The peft prefix adapter's keys and values per layer, each (B, heads, P, head_dim); None without one."""
    if not hasattr(llm, "get_base_model") or llm.peft_config["default"].peft_type.value != "PREFIX_TUNING":
        return None
    cache = llm.get_prompt(batch)
    return [(layer.keys, layer.values) for layer in cache.layers]


class GreedyDecoder:
    """Greedy decoding for one causal LM (the base model under any adapter). `compile=True` compiles the
    per-token step (`torch.compile`, mode "reduce-overhead": CUDA graphs on a GPU); the first call per shape
    pays for the compilation."""

    def __init__(self, llm: nn.Module, compile: bool = False):
        self.llm = llm
        self.cache, self._cache_shape = None, None
        self.compiled = compile
        self.step: Callable = self._step
        if compile:
            self.step = torch.compile(self._step, mode="reduce-overhead", fullgraph=False, dynamic=False)

    def _step(self, ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        return self.llm(input_ids=ids, position_ids=pos, attention_mask=mask, cache=cache, use_cache=True).logits[:, -1]

    @torch.no_grad()
    def __call__(self, emb: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, eos_id: int, pad_id: int,
                 prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """emb (B, N, D) left-padded prompt embeddings, mask (B, N) 1 on real positions -> new tokens
        (B, T <= max_new_tokens); a row that has ended holds pad_id after its eos (as `generate` does)."""
        from transformers import StaticCache

        b, n, _ = emb.shape
        p = prefix[0][0].shape[2] if prefix else 0
        # One cache per batch size and length bucket, reset between calls: a re-plan or a done check reuses the
        # last plan's buffers (and, compiled, its graphs) instead of allocating and capturing new ones.
        length = -(-(p + n + max_new_tokens) // BUCKET) * BUCKET
        shape = (b, length, emb.dtype, emb.device)
        if shape != self._cache_shape:
            self.cache, self._cache_shape = StaticCache(config=self.llm.config, max_cache_len=length), shape
        else:
            self.cache.reset()
        cache = self.cache
        for i, (k, v) in enumerate(prefix or []):
            cache.update(k, v, i)
        # valid[b, j]: key j may be attended to (prefix, the prompt's real positions, tokens written so far).
        valid = torch.zeros(b, length, dtype=torch.bool, device=emb.device)
        valid[:, :p] = True
        valid[:, p:p + n] = mask.bool()
        pos = valid[:, :p + n].long().cumsum(-1) - 1  # positions count the prefix, as generate's do
        pos = pos.masked_fill(~valid[:, :p + n], 1)[:, p:]
        causal = torch.arange(length, device=emb.device)[None] <= torch.arange(p, p + n, device=emb.device)[:, None]
        logits = self.llm(inputs_embeds=emb, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1,
                          attention_mask=_additive(valid[:, None] & causal, emb.dtype)).logits[:, -1]
        nxt_pos = pos[:, -1:] + 1
        done = torch.zeros(b, dtype=torch.bool, device=emb.device)
        out = []
        for t in range(max_new_tokens):
            tok = logits.argmax(-1)
            tok = torch.where(done, torch.full_like(tok, pad_id), tok)
            out.append(tok)
            done |= tok == eos_id
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            valid[:, p + n + t] = True
            logits = self.step(tok[:, None], nxt_pos + t, _additive(valid[:, None, None], emb.dtype), cache)
        return torch.stack(out, 1)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean (B, [1,] q, kv) mask as the additive float mask both eager and SDPA attention take, (B, 1, q, kv)."""
    if allowed.dim() == 3:
        allowed = allowed[:, None]
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
