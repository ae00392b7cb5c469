"""The EmbodiedGPT model with real transformers/peft modules at toy sizes, and its loading paths
(random models saved to a temp dir and loaded back the way a user's checkpoint is)."""
import pytest
import torch

from embodied.datasets.egocot import format_plan, plan_start
from embodied.errors import EmbodiedError
from embodied.modeling import (
    AdapterConfig,
    EFormerConfig,
    EmbodiedGPT,
    EmbodiedGPTConfig,
    LLMConfig,
    VisionConfig,
    VisionEncoder,
    count_parameters,
    plan_prompt,
)
from embodied.tokenizer import train_tokenizer

PLAN = format_plan("stack the red cube on the green cube",
                   ["reach the red cube", "grasp the red cube", "place the red cube on the green cube"])


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([PLAN, "The robot arm is about to reach the can.", plan_prompt("lift the cube")] * 5, 300)


def small_cfg(adapter="adaption_prompt") -> EmbodiedGPTConfig:
    return EmbodiedGPTConfig(
        vision=VisionConfig(
            image_size=32, patch_size=16, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64
        ),
        eformer=EFormerConfig(
            num_queries=4, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, dropout=0.0
        ),
        llm=LLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
        adapter=AdapterConfig(type=adapter, adapter_len=3, adapter_layers=2, num_virtual_tokens=3),
    )


def adapted_model(tok, adapter: str) -> EmbodiedGPT:
    """A toy model whose adapter weights are random, not their zero init (LLaMA-Adapter's gate and LoRA's B
    start at zero), so the adapter changes every output."""
    torch.manual_seed(0)
    m = EmbodiedGPT(small_cfg(adapter), tokenizer=tok).eval()
    with torch.no_grad():
        for p in m.llm.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    return m


def video(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 8, 40, 40, 3), dtype=torch.uint8, generator=g)


def test_inflated_video_embedding_matches_the_image_vit():
    enc = VisionEncoder(small_cfg().vision).eval()
    image = torch.randint(0, 256, (1, 1, 32, 32, 3), dtype=torch.uint8)
    still = image.expand(1, 8, 32, 32, 3)
    with torch.no_grad():
        ref = enc.backbone(pixel_values=enc.preprocess(image)[:, :, 0]).last_hidden_state
        ref = enc.backbone.post_layernorm(ref)
        tokens = enc(still)
    assert tokens.shape == (1, enc.num_tokens, 32) and enc.num_tokens == 4 * 5
    for slot in range(4):  # every time slot of a still clip embeds as the image does
        torch.testing.assert_close(tokens[:, slot * 5:(slot + 1) * 5], ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(enc(image), ref, atol=1e-5, rtol=1e-4)  # single images are accepted


def test_frozen_parts_get_no_gradient_and_stay_in_eval(tok):
    m = EmbodiedGPT(small_cfg(), tokenizer=tok)
    m.train()
    assert not m.vision.backbone.training
    loss = m(video(), [plan_prompt("a"), plan_prompt("b")], [PLAN, "Task: x."])
    loss.backward()
    frozen = [p for p in m.vision.backbone.parameters()] + [
        p for n, p in m.llm.named_parameters() if "adaption" not in n
    ]
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    for mod in (m.vision.patch_embed3d, m.eformer.layers[0].cross_attn, m.mapping):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())
    adapter = [p for n, p in m.llm.named_parameters() if p.requires_grad]
    assert adapter and all(p.grad is not None for p in adapter)
    c = count_parameters(m)
    assert c["trainable"] == sum(p.numel() for p in m.parameters() if p.requires_grad) < c["total"]


def test_loss_covers_answer_tokens_only(tok):
    m = EmbodiedGPT(small_cfg(), tokenizer=tok)
    q, _ = m.encode(video(1), ["x"])
    seqs, labels = m._sequences(q, [plan_prompt("lift")], ["Task: lift."])
    answer = tok("Task: lift.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(seqs[0]) == len(labels[0])
    assert [t for t in labels[0] if t != -100] == answer
    assert labels[0][-len(answer):] == answer


@pytest.mark.parametrize("adapter", ["adaption_prompt", "prefix", "lora"])
def test_batched_cached_generation_matches_step_by_step(tok, adapter):
    m = adapted_model(tok, adapter)
    v = video(2)
    prompts = [plan_prompt("lift the cube"), "x"]  # different lengths: left padding must not matter
    batched = m.generate(v, prompts, max_new_tokens=6, min_new_tokens=6)
    for i in range(2):
        assert batched[i] == _greedy_without_cache(m, v[i:i + 1], prompts[i], "", 6)


def _greedy_without_cache(m, v, prompt: str, start: str, n: int) -> str:
    """The reference decoder: full forwards over [prompt, forced start, tokens so far], n tokens, no EOS."""
    tok = m.tokenizer
    with torch.no_grad():
        q, _ = m.encode(v, [prompt])
        seq = m._sequences(q, [prompt], None, [start])[0][0][None]
        ids = []
        for _ in range(n):
            logits = m.llm(inputs_embeds=seq, attention_mask=torch.ones(seq.shape[:2], dtype=torch.long)).logits
            logits[0, -1, tok.eos_token_id] = -float("inf")
            nxt = int(logits[0, -1].argmax())
            ids.append(nxt)
            seq = torch.cat([seq, m.llm.get_input_embeddings()(torch.tensor([[nxt]]))], 1)
    return (start + tok.decode(ids, skip_special_tokens=True)).strip()


@pytest.mark.parametrize("adapter", ["adaption_prompt", "prefix"])
def test_forced_answer_start_is_the_training_tokens_then_greedy(tok, adapter):
    m = adapted_model(tok, adapter)
    v = video(2)
    prompts, starts = [plan_prompt("lift the cube"), "x"], [plan_start("lift the cube"), ""]
    with torch.no_grad():  # the forced start is the training answer's own first tokens, EOS aside
        q, _ = m.encode(v[:1], prompts[:1])
        forced = m._sequences(q, prompts[:1], None, starts[:1])[0][0]
        teacher = m._sequences(q, prompts[:1], [starts[0]])[0][0]
    torch.testing.assert_close(forced, teacher[:-1])
    out = m.generate(v, prompts, max_new_tokens=4, min_new_tokens=4, answer_start=starts)
    assert out[0].startswith("Task: lift the cube. Plan:")
    for i in range(2):
        assert out[i] == _greedy_without_cache(m, v[i:i + 1], prompts[i], starts[i], 4)


@pytest.mark.parametrize("adapter", ["adaption_prompt", "prefix", "lora"])
def test_choice_scores_on_a_shared_cache_match_full_forwards(tok, adapter):
    m = adapted_model(tok, adapter)
    v = video(1)  # one clip, two questions of different lengths, answers of different lengths
    prompts, choices = [plan_prompt("lift the cube"), "x"], ["yes", "no", "reach the can"]
    shared = m.choice_logprobs(v, prompts, choices)
    full = []  # the training loss of each (prompt, answer) pair alone, right-padded, no cache: mean NLL x tokens
    with torch.no_grad():
        for p in prompts:
            for c in choices:
                n = len(tok(c, add_special_tokens=False)["input_ids"]) + 1  # + EOS
                full.append(-m(v, [p], [c]).item() * n)
    torch.testing.assert_close(shared.flatten(), torch.tensor(full), atol=1e-4, rtol=1e-4)


def test_slot_cache_gives_the_same_tokens_and_skips_seen_slots(tok):
    enc = VisionEncoder(small_cfg().vision).eval()
    frames = torch.randint(0, 256, (12, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        ref = [enc(frames[None, :8]), enc(frames[None, 4:12])]
        enc.enable_slot_cache(8)
        calls = []
        enc.backbone.encoder.register_forward_hook(lambda mod, a, kw, out: calls.append(kw["inputs_embeds"].shape[0]),
                                                   with_kwargs=True)
        got = [enc(frames[None, :8]), enc(frames[None, 4:12])]
    for r, g in zip(ref, got):
        torch.testing.assert_close(r, g)
    assert calls == [4, 2]  # the clip moved by two slots: only those two went through the ViT


def test_plan_returns_text(tok):
    m = EmbodiedGPT(small_cfg(), tokenizer=tok).eval()
    out = m.plan(video(1)[0], "stack the red cube", max_new_tokens=5)
    assert isinstance(out, str)


def test_checkpoint_round_trip(tok, tmp_path):
    from embodied.modeling import EmbodiedGPT

    torch.manual_seed(1)
    m = EmbodiedGPT(small_cfg(), tokenizer=tok).eval()
    m.save_pretrained(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer", "vision", "llm"} <= files
    m2 = EmbodiedGPT.from_pretrained(tmp_path / "ckpt").eval()
    v = video(1)
    with torch.no_grad():
        a = m(v, ["p"], ["Task: a."])
        b = m2(v, ["p"], ["Task: a."])
    torch.testing.assert_close(a, b)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert set(saved) == {k for k, p in m.named_parameters() if p.requires_grad}  # trainable weights only


def test_loads_clip_and_llama_from_local_directories(tok, tmp_path):
    from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM

    clip = CLIPModel(CLIPConfig(vision_config=dict(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=64),
                                text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=64, vocab_size=99)))
    clip.save_pretrained(tmp_path / "clip")  # a full CLIP checkpoint, as openai/clip-vit-large-patch14 is
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96,
                                         num_hidden_layers=2, num_attention_heads=2))
    llama.save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    cfg = small_cfg()
    cfg.vision.pretrained, cfg.llm.pretrained = str(tmp_path / "clip"), str(tmp_path / "llama")
    cfg.vision.hidden_size = 999  # the checkpoint's real sizes win
    m = EmbodiedGPT(cfg)
    assert cfg.vision.hidden_size == 32 and cfg.llm.hidden_size == 48 and m.mapping.out_features == 48
    torch.testing.assert_close(m.vision.backbone.embeddings.patch_embedding.weight,
                               clip.vision_model.embeddings.patch_embedding.weight)
    base = m.llm.get_base_model()
    torch.testing.assert_close(base.model.layers[1].mlp.down_proj.weight, llama.model.layers[1].mlp.down_proj.weight)
    assert len(m.tokenizer) == len(tok)


def test_eformer_from_blip2_checkpoint(tok, tmp_path):
    from transformers import Blip2Config, Blip2Model

    blip = Blip2Model(Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        qformer_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            encoder_hidden_size=32, cross_attention_frequency=2),
        text_config=dict(model_type="opt", hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2,
                         vocab_size=100, word_embed_proj_dim=32), num_query_tokens=4))
    blip.save_pretrained(tmp_path / "blip2")
    cfg = small_cfg()
    cfg.eformer.blip2 = str(tmp_path / "blip2")
    m = EmbodiedGPT(cfg, tokenizer=tok)
    sd = blip.state_dict()
    torch.testing.assert_close(m.eformer.query_tokens, sd["query_tokens"])
    torch.testing.assert_close(
        m.eformer.layers[0].cross_attn.key.weight, sd["qformer.encoder.layer.0.crossattention.attention.key.weight"]
    )
    torch.testing.assert_close(
        m.eformer.layers[1].self_attn.dense.bias, sd["qformer.encoder.layer.1.attention.output.dense.bias"]
    )
    torch.testing.assert_close(
        m.eformer.layers[0].ffn_text.fc1.weight, sd["qformer.encoder.layer.0.intermediate_query.dense.weight"]
    )
    assert m.eformer.layers[1].cross_attn is None  # BLIP-2's rule: cross-attention on every 2nd layer


def test_bad_model_paths_give_one_clear_error(tok, tmp_path):
    cfg = small_cfg()
    cfg.vision.pretrained = str(tmp_path / "nowhere")
    with pytest.raises(EmbodiedError, match="model.vision.pretrained=.*nowhere.*not a local Hugging Face"):
        EmbodiedGPT(cfg, tokenizer=tok)
    with pytest.raises(EmbodiedError, match="model.adapter.type='bogus'"):
        EmbodiedGPT(EmbodiedGPTConfig.from_dict({**small_cfg().to_dict(), "adapter": {"type": "bogus"}}), tokenizer=tok)
    with pytest.raises(EmbodiedError, match="unknown field"):
        EmbodiedGPTConfig.from_dict({"vision": {"size": 3}})


def test_7b_configuration_on_the_meta_device():
    from embodied.jobs.model_info import build_on_meta, memory_estimate
    from embodied.runconfig import compose

    cfg = compose("model_info", ["model=egpt_7b"])
    m = build_on_meta(cfg)
    est = memory_estimate(m)
    p = est["parameters"]
    assert 300e6 < p["vision"]["total"] < 306e6 and p["vision"]["trainable"] == 0  # ViT-L/14: 303M, frozen
    assert 6.70e9 < p["llm"]["total"] < 6.78e9  # LLaMA-7B: 6.74B
    adapter = 30 * 10 * 4096 + 30  # LLaMA-Adapter: 10 prompts x 30 layers x 4096, plus a gate per layer
    assert p["llm"]["trainable"] == adapter
    assert p["eformer"]["trainable"] == p["eformer"]["total"] and p["mapping"]["total"] == 768 * 4096 + 4096
    assert est["trainable"] == p["eformer"]["total"] + p["mapping"]["total"] + p["video_patch_embed"]["total"] + adapter
    assert est["frozen"] == p["vision"]["total"] + p["llm"]["total"] - adapter
    assert len(m.eformer.query_tokens[0]) == 32 and len(m.eformer.layers) == 12
    assert 13 < est["bf16_inference_weights_GiB"] < 14


def test_several_cameras_are_encoded_each_alone_with_a_view_embedding(tok, tmp_path):
    """views=2: a sample holds two cameras' clips; each goes through the ViT on its own (one view alone gives the
    tokens a one-view model gives), the view embedding tells them apart, and plans and checks take (V, T, ...)."""
    import numpy as np

    from embodied.modeling import EmbodiedGPT
    from embodied.planners import EmbodiedGPTPlanner

    cfg = small_cfg()
    cfg.vision.views = 2
    torch.manual_seed(0)
    m = EmbodiedGPT(cfg, tokenizer=tok).eval()
    with torch.no_grad():
        m.vision.view_embed.normal_()
        two = video(2, seed=3).view(1, 2, 8, 40, 40, 3)
        tokens = m.vision(two)
        per = m.vision(two[0])  # the two clips as a batch of one-view samples
    n = per.shape[1]
    assert tokens.shape == (1, 2 * n, 32)
    torch.testing.assert_close(tokens[0, :n], per[0] + m.vision.view_embed[0])
    torch.testing.assert_close(tokens[0, n:], per[1] + m.vision.view_embed[1])
    with pytest.raises(EmbodiedError, match="3 camera clips per sample; this model was built for 2"):
        m.vision(torch.zeros(1, 3, 8, 40, 40, 3, dtype=torch.uint8))
    m.cfg.cameras = ["agentview", "robot0_eye_in_hand"]
    m.save_pretrained(tmp_path / "ckpt")
    planner = EmbodiedGPTPlanner(EmbodiedGPT.from_pretrained(tmp_path / "ckpt"), max_new_tokens=4)
    assert planner.cameras == ["agentview", "robot0_eye_in_hand"]
    clip = np.asarray(two[0])  # (V, T, H, W, 3), as the agent gives it
    assert isinstance(planner.plan(clip, "stack the red cube").task, str)
    assert len(planner.are_done(clip, ["reach the red cube", "grasp the red cube"])) == 2
