"""Plan latency, per token, beside the bare LLM and the memory-bandwidth floor, in one run (random weights).

- plan: what `EmbodiedGPT.generate` runs (embodied/decoding.py: static cache, the adapter's prefix written once,
  the visual prefix encoded once), 8 frames in; per token = (time of N tokens - time of 1 token) / (N - 1), so
  the prompt's prefill is not in it. EOS is not allowed to stop it.
- before: the same plan through transformers' `generate` (the path used until 2026-12-06).
- bare: an LLM of the same shape with no vision or adapter, transformers' `generate` on its static cache
  (`cache_implementation="static"`; with --compile, transformers' own compiled forward) from a text prompt as
  long as the multimodal one.
- floor: the LLM's weight bytes / this device's measured copy bandwidth: decoding reads every weight once a token.
With --batch B > 1 it also times the plan of one clip alone (`batch_over_one`: B agents' plans answered together
against one agent's; the rollout's planner.batch=true answers agents so, planners/batching.py).
With --train-batch B it also times one stage-2 training step (batch B, answer-only loss, backward, AdamW on the
trainable parts) as `embodied train-planner` builds it, and its peak GPU memory.

    python bench/plan_latency.py --model tiny                        # CPU, float32, the tiny shape
    python bench/plan_latency.py --model tiny --llm 1b               # the tiny vision with a LLaMA of 1B shape
    python bench/plan_latency.py --model tiny --batch 8              # 8 plans at once against one
    python bench/plan_latency.py --model egpt_7b --device cuda --dtype bfloat16 --compile --train-batch 8  # a GPU
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

# LLaMA-3.2-1B's shape (its vocabulary aside: the bench's tokenizer decides that, as a user's LLaMA's does).
SHAPES = {"1b": {"hidden_size": 2048, "num_layers": 16, "num_heads": 32, "intermediate_size": 8192}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--llm", choices=sorted(SHAPES), help="replace the model's LLM shape")
    ap.add_argument("--adapter", help="replace the model's adapter type (prefix, adaption_prompt, lora, none)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="compile the plan path's decode step")
    ap.add_argument("--train-batch", type=int, default=0, help="also time one training step of this batch")
    args = ap.parse_args()

    from transformers import LlamaForCausalLM

    from embodied.datasets.egocot import format_plan
    from embodied.decoding import GreedyDecoder, prefix_cache
    from embodied.jobs.train_planner import model_config
    from embodied.modeling import EmbodiedGPT, llama_config, plan_prompt
    from embodied.runconfig import compose
    from embodied.tokenizer import train_tokenizer

    cfg = model_config(compose("train_planner", [f"model={args.model}"]))
    cfg.llm.dtype = args.dtype
    for k, v in SHAPES.get(args.llm, {}).items():
        setattr(cfg.llm, k, v)
    if args.adapter:
        cfg.adapter.type = args.adapter
        cfg.adapter.adapter_layers = min(cfg.adapter.adapter_layers, cfg.llm.num_layers)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    # A user's LLaMA brings its own tokenizer; shapes and speed do not depend on which one is used.
    tok = train_tokenizer([format_plan("stack the red cube on the green cube", ["reach the red cube"]),
                           plan_prompt("stack the red cube on the green cube")] * 4, 300)
    with torch.device(args.device):
        llm = LlamaForCausalLM(llama_config(cfg.llm)).to(dtype)
        model = EmbodiedGPT(cfg, tokenizer=tok, llm=llm).to(dtype).eval()
    frames = cfg.vision.frames
    video = torch.randint(0, 256, (args.batch, frames, cfg.vision.image_size, cfg.vision.image_size, 3),
                          dtype=torch.uint8, device=args.device)
    prompts = [plan_prompt("stack the red cube on the green cube")] * args.batch
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def timed(fn) -> float:
        fn()  # warm-up (and compilation)
        out = []
        for _ in range(args.runs):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    def per_token(fn) -> tuple[float, float]:
        """(seconds for n tokens, seconds per token after the first)."""
        t_n, t_1 = timed(lambda: fn(n)), timed(lambda: fn(1))
        return t_n, (t_n - t_1) / (n - 1)

    n = args.tokens
    decoder = GreedyDecoder(model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm,
                            compile=args.compile)

    @torch.no_grad()
    def plan(k: int) -> None:  # EmbodiedGPT.generate's greedy path, EOS never ending it (-1)
        _, emb, mask, _ = model._prompt_batch(video, prompts, None, False, with_prefix=False)
        decoder(emb, mask, k, -1, 0, prefix_cache(model.llm, len(prompts)))

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_plan, tok_plan = per_token(plan)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    one = {}
    if args.batch > 1:  # the same plan for one clip: what answering B agents together costs over one alone
        full = video, prompts
        video, prompts = video[:1], prompts[:1]
        t_one = timed(lambda: plan(n))
        video, prompts = full
        one = {"plan_batch1_s": round(t_one, 4), "batch_over_one": round(t_plan / t_one, 3),
               "one_by_one_over_batch": round(args.batch * t_one / t_plan, 2)}
    t_before, tok_before = per_token(lambda k: model.generate(video, prompts, max_new_tokens=k, min_new_tokens=k))
    q, _ = model.encode(video, prompts)
    length = len(model._sequences(q, prompts, None)[0][0])
    ids = torch.full((args.batch, length), 5, dtype=torch.long, device=args.device)
    del llm  # the model holds it; the bare LLM is a second one of the same shape, without the adapter in its
    # modules (its weights are random too: decoding's speed does not depend on their values)
    with torch.device(args.device):
        bare = LlamaForCausalLM(model.llm.get_base_model().config if hasattr(model.llm, "get_base_model")
                                else model.llm.config).to(dtype).eval()
    compiled = {}
    if args.compile:  # transformers compiles the static-cache forward itself; on CPU only when told to
        from transformers import CompileConfig

        cc = CompileConfig(fullgraph=False, mode="reduce-overhead", dynamic=False)
        cc._compile_all_devices = True
        compiled = {"compile_config": cc}
    t_bare, tok_bare = per_token(lambda k: bare.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=k, min_new_tokens=k, do_sample=False,
        pad_token_id=0, cache_implementation="static", **compiled))
    weight_bytes = sum(p.numel() * p.element_size() for p in bare.parameters())
    bandwidth = copy_bandwidth(args.device)
    floor = weight_bytes / bandwidth
    res = {"model": args.model, "llm_shape": args.llm or args.model, "adapter": cfg.adapter.type,
           "device": args.device, "dtype": args.dtype, "batch": args.batch, "new_tokens": n, "compile": args.compile,
           "llm_params_M": round(sum(p.numel() for p in bare.parameters()) / 1e6, 1),
           "plan_s": round(t_plan, 4), "plan_ms_per_token": round(1e3 * tok_plan, 3),
           "before_s": round(t_before, 4), "before_ms_per_token": round(1e3 * tok_before, 3),
           "bare_llm_s": round(t_bare, 4), "bare_llm_ms_per_token": round(1e3 * tok_bare, 3),
           "floor_ms_per_token": round(1e3 * floor, 3), "copy_bandwidth_GBps": round(bandwidth / 1e9, 1),
           "plan_over_bare": round(tok_plan / tok_bare, 3), "plan_over_floor": round(tok_plan / floor, 2),
           "before_over_plan": round(tok_before / tok_plan, 2),
           "peak_gpu_memory_GiB": None if peak is None else round(peak, 2), **one}
    print(json.dumps(res), flush=True)
    if args.train_batch:
        del model, bare, decoder
        print(json.dumps(train_step(cfg, tok, args, timed)))


def copy_bandwidth(device: str) -> float:
    """Bytes a second that a large tensor copy moves on `device` (read plus write), best of 5."""
    x = torch.empty(64 * 2**20, dtype=torch.float32, device=device)  # 256 MiB, beyond any cache
    y = torch.empty_like(x)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = float("inf")
    for _ in range(6):
        sync()
        t0 = time.perf_counter()
        y.copy_(x)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * x.numel() * x.element_size() / best


def train_step(cfg, tok, args, timed) -> dict:
    """One optimiser step of stage 2 (plan targets) at the configured scale."""
    from embodied.datasets.egocot import format_plan
    from embodied.modeling import EmbodiedGPT, build_llm, count_parameters, plan_prompt

    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
    torch.manual_seed(0)
    with torch.device(args.device):
        model = EmbodiedGPT(cfg, tokenizer=tok, llm=build_llm(cfg.llm)).train()  # LLM in cfg.llm.dtype
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    b = args.train_batch
    video = torch.randint(0, 256, (b, cfg.vision.frames, cfg.vision.image_size, cfg.vision.image_size, 3),
                          dtype=torch.uint8, device=args.device)
    task = "stack the red cube on the green cube"
    prompts = [plan_prompt(task)] * b
    answers = [format_plan(task, ["reach the red cube", "grasp the red cube", "lift the red cube",
                                  "place the red cube on the green cube", "release the red cube"])] * b

    def step() -> None:
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16,
                            enabled=args.dtype == "bfloat16"):
            loss = model(video, prompts, answers)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = timed(step)
    with torch.no_grad():
        q, _ = model.encode(video[:1], prompts[:1])
        seq = len(model._sequences(q, prompts[:1], answers[:1])[0][0])
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {"train_batch": b, "sequence_tokens": seq, "trainable_params": count_parameters(model)["trainable"],
            "train_step_s": round(t, 3), "train_peak_gpu_memory_GiB": None if peak is None else round(peak, 2)}


if __name__ == "__main__":
    main()
