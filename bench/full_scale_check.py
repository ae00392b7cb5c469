"""The 7B path end to end on random weights in the real shapes. It saves a CLIP ViT-L/14 and a LLaMA-7B as
local Hugging Face directories, the layout of a user's downloaded weights. Stage 2 then trains from them through
`embodied train-planner` under `accelerate launch` (bf16): it stops after 2 steps and resumes to step 4. The
checkpoint is loaded with `EmbodiedGPT.from_pretrained` and plans from one clip of the corpus. Each part is timed.
It needs a GPU (about 40 GB) and 20 GB of disk; --small runs the same path with tiny shapes on CPU.

    python bench/full_scale_check.py --data CORPUS/egocot.jsonl --work /tmp/egpt7b     # from `embodied corpus`
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SMALL = ["model.eformer.num_layers=2", "model.eformer.hidden_size=64", "model.eformer.intermediate_size=128",
         "model.eformer.num_heads=2", "model.adapter.adapter_layers=2", "model.llm.dtype=float32"]


def save_random_models(out: Path, small: bool, device: str) -> None:
    from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM

    from embodied.datasets.egocot import format_plan
    from embodied.modeling import plan_prompt
    from embodied.tokenizer import train_tokenizer

    if small:
        vis = dict(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64)
        txt = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        llm = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
    else:  # openai/clip-vit-large-patch14 and LLaMA-7B
        vis = dict(image_size=224, patch_size=14, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                   intermediate_size=4096, projection_dim=768)
        txt = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                   projection_dim=768)
        llm = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
    with torch.device(device):  # random init on the GPU: seconds instead of minutes
        CLIPModel(CLIPConfig(vision_config=vis, text_config=txt)).save_pretrained(out / "clip")
        LlamaForCausalLM(LlamaConfig(vocab_size=32000, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
                                     **llm)).to(torch.bfloat16).save_pretrained(out / "llama")
    # A user's LLaMA directory holds its tokenizer; this stand-in is trained on a few plans.
    task = "lift the red cube"
    train_tokenizer([format_plan(task, ["reach the red cube", "grasp the red cube", "lift the red cube"]),
                     plan_prompt(task)] * 8, 400).save_pretrained(out / "llama")


def train(args, work: Path, extra: list[str]) -> str:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
           "--mixed_precision", "no" if args.small else "bf16", "-m", "embodied.cli", "train-planner",
           "model=egpt_7b", f"model.vision.pretrained={work / 'models' / 'clip'}",
           f"model.llm.pretrained={work / 'models' / 'llama'}", f"data={args.data.resolve()}", f"out={work / 'tp'}",
           "stage=plan", "steps=4", f"batch_size={args.batch}", "save_every=100", "eval_samples=0", *extra]
    # Run outside the repository: its embodied/ folder would shadow the installed package.
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"train-planner failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout + r.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="an EgoCOT-format .jsonl (`embodied corpus`)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/egpt7b"))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--small", action="store_true", help="tiny shapes, CPU: checks the path, not the scale")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.small else "cpu"
    args.work.mkdir(parents=True, exist_ok=True)
    res: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "small": args.small}

    t = time.perf_counter()
    save_random_models(args.work / "models", args.small, device)
    res["save_models_s"] = round(time.perf_counter() - t, 1)
    extra = SMALL if args.small else []
    t = time.perf_counter()
    train(args, args.work, [*extra, "stop_after=2"])
    res["train_2_steps_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    log = train(args, args.work, extra)
    res["resume_to_4_steps_s"] = round(time.perf_counter() - t, 1)
    ckpt = args.work / "tp" / "checkpoint"
    step = torch.load(ckpt / "trainer_state.pt", weights_only=True)["step"]
    if "resuming" not in log or step != 4:
        sys.exit(f"resume did not happen as expected (step {step}):\n{log[-2000:]}")
    res["checkpoint_MB"] = {p.name: round(p.stat().st_size / 2**20) for p in ckpt.iterdir() if p.is_file()}

    from embodied.modeling import EmbodiedGPT

    t = time.perf_counter()
    model = EmbodiedGPT.from_pretrained(ckpt).to(device).eval()
    res["load_checkpoint_s"] = round(time.perf_counter() - t, 1)
    item = json.loads(args.data.read_text().splitlines()[0])
    clip = torch.from_numpy(np.load(args.data.parent / item["image"]))
    t = time.perf_counter()
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
        text = model.plan(clip, item["instruction"], max_new_tokens=48)
    res["plan_s"] = round(time.perf_counter() - t, 1)
    res.update(llm=type(model.llm).__name__, on=str(model.device), plan=text[:120])
    print(json.dumps(res))


if __name__ == "__main__":
    main()
