"""Greedy decoding on a static cache (embodied/decoding.py): token for token what transformers' `generate` writes,
with every adapter, left padding, forced answer starts and EOS; one cache reused across a plan and its re-plan."""
import pytest
import torch
from test_model import adapted_model, tok, video  # noqa: F401  (tok is a fixture)

from embodied.datasets.egocot import plan_start
from embodied.decoding import GreedyDecoder, prefix_cache
from embodied.modeling import plan_prompt


def _both(m, v, prompts, starts, n):
    """(static-cache decoder tokens, transformers generate tokens) for the same prompts."""
    t = m.tokenizer
    pad = t.pad_token_id if t.pad_token_id is not None else t.eos_token_id
    llm, emb, mask, past = m._prompt_batch(v, prompts, None, False, n, starts)
    ref = llm.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=n, cache=past, do_sample=False,
                       pad_token_id=pad, eos_token_id=t.eos_token_id)
    llm, emb, mask, _ = m._prompt_batch(v, prompts, None, False, starts=starts, with_prefix=False)
    out = GreedyDecoder(llm)(emb, mask, n, t.eos_token_id, pad, prefix_cache(m.llm, len(prompts)))
    return out, ref


@pytest.mark.parametrize("adapter", ["adaption_prompt", "prefix", "lora"])
def test_static_cache_decoding_is_generates_tokens(tok, adapter):  # noqa: F811
    m = adapted_model(tok, adapter)
    prompts = [plan_prompt("lift the cube"), "x", plan_prompt("stack the red cube on the green cube", "it fell")]
    starts = [plan_start("lift the cube"), "", ""]
    with torch.no_grad():
        for n in (1, 9):
            out, ref = _both(m, video(3), prompts, starts, n)
            assert out.shape == ref.shape and torch.equal(out, ref), (out, ref)
        # EOS, made likelier, ends a row (pad after it) and, once every row has, the call.
        head = m.llm.get_output_embeddings()
        head.weight.data[tok.eos_token_id] *= 0
        head.weight.data[tok.eos_token_id] += head.weight.data.mean(0) * 40
        out, ref = _both(m, video(3), prompts, starts, 9)
        ended = (out == tok.eos_token_id).any(1)
        assert torch.equal(out, ref) and ended.any()
        if not ended.all():  # the rows that end, alone
            out, ref = _both(m, video(3)[ended], [p for p, e in zip(prompts, ended) if e],
                             [s for s, e in zip(starts, ended) if e], 9)
        assert torch.equal(out, ref) and out.shape[1] < 9


def test_a_replan_reuses_the_cache_and_decodes_as_a_fresh_decoder(tok):  # noqa: F811
    m = adapted_model(tok, "prefix")
    v, n = video(1), 40  # both prompts' caches fall in the same length bucket
    first = m.generate(v, [plan_prompt("lift the cube")], n)
    cache = m.decoder.cache
    replan = m.generate(v, [plan_prompt("lift the cube", "Step 2 'grasp the cube' failed.")], n)
    assert m.decoder.cache is cache  # the same buffers: same batch size and length bucket
    assert m.generate(v, [plan_prompt("lift the cube")], n) == first  # nothing of the re-plan stays behind
    m.decoder = None
    assert m.generate(v, [plan_prompt("lift the cube", "Step 2 'grasp the cube' failed.")], n) == replan
    assert m.generate(v, [plan_prompt("lift the cube")], n, do_sample=False, num_beams=1) == first  # generate's path


def test_the_compiled_decoder_writes_the_same_plans(tok):  # noqa: F811
    """planner.compile=true: the per-token step through torch.compile (inductor on CPU), same tokens."""
    m = adapted_model(tok, "prefix")
    v = video(2)
    prompts = [plan_prompt("lift the cube"), plan_prompt("lift the cube", "it fell")]
    eager = m.generate(v, prompts, 12)
    m.compile_decoding = True
    assert m.generate(v, prompts, 12) == eager and m.decoder.compiled
