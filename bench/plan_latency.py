"""Plan latency: 8 frames in, N tokens out (greedy, KV cache, random init), against the bare LLM
generating the same number of tokens from a prompt of the same length (the baseline, same run).
With --train-batch B it also times one stage-2 training step (batch B, answer-only loss, backward, AdamW
on the trainable parts) built as `embodied train-planner` builds it: the LLM in --dtype and frozen, the rest
float32 under bf16 autocast (accelerate's mixed precision), and reports that step's peak GPU memory.

    python bench/plan_latency.py --model tiny                        # CPU, float32
    python bench/plan_latency.py --model egpt_7b --device cuda --dtype bfloat16 --train-batch 8  # a GPU (~40 GB)
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--train-batch", type=int, default=0, help="also time one training step of this batch")
    args = ap.parse_args()

    from hydra import compose, initialize_config_dir
    from transformers import LlamaForCausalLM

    from embodied.cli import config_dir
    from embodied.datasets.egocot import format_plan
    from embodied.jobs.train_planner import model_config
    from embodied.modeling import EmbodiedGPT, llama_config, plan_prompt
    from embodied.tokenizer import train_tokenizer

    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        cfg = model_config(compose(config_name="train_planner", overrides=[f"model={args.model}"]))
    cfg.llm.dtype = args.dtype
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
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def timed(fn) -> float:
        fn()  # warm-up
        out = []
        for _ in range(args.runs):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    n = args.tokens
    t_plan = timed(lambda: model.generate(video, prompts, max_new_tokens=n, min_new_tokens=n))
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    # Baseline: the same LLM (with its adapter) from a text prompt as long as the multimodal one.
    q, _ = model.encode(video, prompts)
    length = len(model._sequences(q, prompts, None)[0][0])
    ids = torch.full((args.batch, length), 5, dtype=torch.long, device=args.device)
    base = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
    t_llm = timed(lambda: base.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                        min_new_tokens=n, do_sample=False, pad_token_id=0))
    res = {"model": args.model, "device": args.device, "dtype": args.dtype, "batch": args.batch, "new_tokens": n,
           "frames": frames, "plan_latency_s": round(t_plan, 3), "llm_only_latency_s": round(t_llm, 3),
           "ratio_llm_only_over_plan": round(t_llm / t_plan, 3), "peak_gpu_memory_GiB": None if peak is None else round(peak, 2)}
    print(json.dumps(res), flush=True)
    if args.train_batch:
        del model, llm, base
        print(json.dumps(train_step(cfg, tok, args, timed)))


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
