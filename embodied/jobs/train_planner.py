"""`embodied train-planner`: the planner's training stages, one script for CPU, DDP, FSDP and DeepSpeed
(`accelerate launch ... -m embodied.cli train-planner ...`).

stage=lm     tiny recipe only: train the BPE tokenizer and pretrain the tiny Llama on the corpus text
             (the stand-in for LLaMA's pretraining); writes a Hugging Face model directory.
stage=align  video -> description (EgoCOT captions). The tiny recipe also trains its ViT here.
stage=plan   video + instruction -> the EgoCOT plan that remains.

Data order is a function of (seed, step), and the checkpoint holds optimizer, scheduler, step and RNG
state, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from embodied.assets import resolve
from embodied.errors import EmbodiedError

STATE = "trainer_state.pt"


# What may change when a run is continued: how long it trains, how often it saves and logs.
RESUMABLE = ("steps", "stop_after", "save_every", "log_every", "eval_samples", "out", "resume")


def run(cfg: DictConfig, default_dir: Path) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from embodied.runconfig import check_continuation, save_config

    out = Path(cfg.out) if cfg.out else default_dir
    if cfg.stage not in ("lm", "align", "plan"):
        raise EmbodiedError(f"stage={cfg.stage!r}: expected lm, align or plan")
    if not cfg.data:
        raise EmbodiedError("data is not set: give an EgoCOT-format .jsonl/.json file (e.g. from `embodied corpus`)")
    accelerator = Accelerator(log_with="tensorboard", project_dir=str(out))
    _check_launch(accelerator)
    fsdp = bool(cfg.get("fsdp"))
    if fsdp and accelerator.num_processes < 2:
        raise EmbodiedError("fsdp=true shards the model across processes: launch several, e.g. on CPUs "
                            "ACCELERATE_USE_CPU=true `accelerate launch --multi_gpu --num_processes 2 -m embodied.cli "
                            "train-planner ... fsdp=true`")
    ckpt = out / "checkpoint"
    resume = bool(cfg.resume) and (ckpt / STATE).exists()
    if resume:  # on every rank, so that none is left waiting for the others
        check_continuation(cfg, out, RESUMABLE)
    if accelerator.is_main_process:
        save_config(cfg, out)
    set_seed(int(cfg.seed))
    from embodied.datasets.egocot import EgoCOTDataset

    data = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
    dataset = EgoCOTDataset(data, min_score=cfg.min_score)
    if len(dataset) == 0:
        raise EmbodiedError(f"data={data}: no samples")
    if cfg.stage == "lm":
        model, save, step_fn, items = _lm_setup(cfg, dataset, ckpt if resume else None)
    else:
        model, save, step_fn, items = _vl_setup(cfg, dataset, ckpt if resume else None)

    shadow = None  # fsdp: an unsharded copy on the first process, what checkpoints are written from
    if fsdp:
        from embodied import fsdp as fsdp_

        shadow = copy.deepcopy(model) if accelerator.is_main_process else None
        fsdp_.shard(model.to(accelerator.device))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise EmbodiedError("nothing to train: every parameter is frozen")
    opt = torch.optim.AdamW(params, lr=float(cfg.lr), weight_decay=float(cfg.weight_decay))
    from transformers import get_cosine_schedule_with_warmup

    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup), int(cfg.steps))
    start = 0
    if resume:
        state = torch.load(ckpt / STATE, weights_only=True)
        if bool(state.get("fsdp")) != fsdp:
            raise EmbodiedError(f"{ckpt / STATE}: saved {'with' if state.get('fsdp') else 'without'} fsdp; resume it "
                                f"the same way (fsdp={str(bool(state.get('fsdp'))).lower()})")
        if fsdp:
            fsdp_.load_optimizer(model, opt, state["optimizer"])
        else:
            opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
        accelerator.print(f"resuming from {ckpt} at step {start}")
    if not fsdp:  # accelerate wraps it for DDP (or its own FSDP and DeepSpeed on GPUs)
        model, opt, sched = accelerator.prepare(model, opt, sched)
    accelerator.init_trackers(f"train_planner_{cfg.stage}", config=_hparams(cfg))

    bs, world, rank = int(cfg.batch_size), accelerator.num_processes, accelerator.process_index
    # stop_after ends a time-limited slot early, checkpointed; the next invocation resumes from there.
    stop = int(cfg.steps) if cfg.stop_after is None else min(int(cfg.steps), start + int(cfg.stop_after))
    bar = tqdm(range(start, stop), initial=start, total=int(cfg.steps), desc=f"train-planner {cfg.stage}",
               disable=not accelerator.is_main_process)
    losses = []
    for step in bar:
        idx = batch_indices(len(items), bs * world, step, int(cfg.seed))[rank::world]
        batch = [items[i] for i in idx]
        model.train()
        loss = step_fn(model, batch)
        accelerator.backward(loss)
        if cfg.grad_clip and fsdp:
            torch.nn.utils.clip_grad_norm_(params, float(cfg.grad_clip))  # the norm over every shard
        elif cfg.grad_clip:
            accelerator.clip_grad_norm_(params, float(cfg.grad_clip))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_v = accelerator.gather(loss.detach()[None]).mean().item()
        if not math.isfinite(loss_v):
            raise EmbodiedError(f"loss became {loss_v} at step {step + 1}; lower lr (now {cfg.lr})")
        losses.append(loss_v)
        bar.set_postfix(loss=f"{loss_v:.3f}")
        if (step + 1) % int(cfg.log_every) == 0:
            accelerator.log(
                {"loss": float(np.mean(losses[-int(cfg.log_every) :])), "lr": sched.get_last_lr()[0]}, step=step + 1
            )
        if (step + 1) % int(cfg.save_every) == 0 or step + 1 == stop:
            accelerator.wait_for_everyone()
            if fsdp:  # every process gathers; the first writes from its unsharded copy
                weights, opt_state = fsdp_.full_state(model, opt)
                if accelerator.is_main_process:
                    shadow.load_state_dict(weights)
                    _save(ckpt, shadow, save, opt_state, sched, step + 1, fsdp=True)
                accelerator.wait_for_everyone()
            elif accelerator.is_main_process:
                _save(ckpt, accelerator.unwrap_model(model), save, opt.state_dict(), sched, step + 1)
    accelerator.end_training()
    summary = {"stage": cfg.stage, "steps": stop, "finished": stop == int(cfg.steps), "samples": len(items),
               "processes": accelerator.num_processes, "distributed": accelerator.distributed_type.value, "fsdp": fsdp,
               "final_loss": float(np.mean(losses[-10:])) if losses else None, "checkpoint": str(ckpt)}
    if accelerator.is_main_process and cfg.stage == "plan" and int(cfg.eval_samples) > 0 and summary["finished"]:
        summary["train_plan_exact_match"] = _plan_check(shadow if fsdp else accelerator.unwrap_model(model), dataset,
                                                        int(cfg.eval_samples))
    if accelerator.is_main_process:
        from embodied.io import write_json

        write_json(out / "summary.json", summary)
        print(json.dumps(summary))
    return summary


def _check_launch(accelerator) -> None:
    """Refuse a launch that would train wrong, before anything is written: several processes that each think they
    are the only one (torchrun or accelerate's FSDP on a CPU), or accelerate's FSDP, whose checkpoints this job
    would write from one shard (`fsdp=true` shards with torch FSDP2 instead: embodied/fsdp.py)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and accelerator.num_processes != world:
        raise EmbodiedError(
            f"launched as {world} processes, but accelerate runs this one alone "
            f"({accelerator.distributed_type.value}); on CPUs launch with ACCELERATE_USE_CPU=true `accelerate "
            "launch --multi_gpu --num_processes N` (DDP over gloo; add fsdp=true to shard)"
        )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" or accelerator.distributed_type == "FSDP":
        raise EmbodiedError("accelerate's FSDP (--use_fsdp) is not supported: its checkpoints would hold one shard; "
                            "launch DDP (configs/accelerate/ddp.yaml, or on CPUs ACCELERATE_USE_CPU=true `accelerate "
                            "launch --multi_gpu`) and add fsdp=true: the job shards with torch FSDP2 itself")


def _hparams(cfg: DictConfig) -> dict:
    """TensorBoard's hparams take scalars only."""
    from embodied.runconfig import flat

    return {k: v if isinstance(v, (int, float, str, bool)) else str(v)
            for k, v in flat(OmegaConf.to_container(cfg, resolve=True)).items()}


def batch_indices(n: int, global_batch: int, step: int, seed: int) -> list[int]:
    """The samples of global step `step`: consecutive slices of a per-epoch permutation seeded by
    (seed, epoch), so any step's batch can be recomputed on resume without replaying the run."""
    out = []
    pos = step * global_batch
    while len(out) < global_batch:
        epoch, offset = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(global_batch - len(out), n - offset)
        out += perm[offset: offset + take].tolist()
        pos += take
    return out


def _save(ckpt: Path, model, save: Callable, opt_state: dict, sched, step: int, fsdp: bool = False) -> None:
    state = {"optimizer": opt_state, "scheduler": sched.state_dict(), "step": step, "rng": torch.get_rng_state(),
             "fsdp": fsdp}
    save(model, ckpt, {STATE: lambda p: torch.save(state, p)})


# -- stage lm: the tiny LLM's pretraining --------------------------------------------------------
def _lm_texts(dataset, recolour: int = 0) -> list[str]:
    """Every (prompt, answer) text the later stages train on, without the video."""
    from embodied.modeling import TEMPLATE, VIDEO_TOKEN

    pairs = training_pairs(dataset, "align") + training_pairs(dataset, "plan", recolour)
    return sorted({TEMPLATE.replace(VIDEO_TOKEN, "").format(prompt=p["prompt"]) + p["answer"] for p in pairs})


def _lm_setup(cfg, dataset, resume_dir: Path | None):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from embodied.modeling import LLMConfig, llama_config, load_hf
    from embodied.tokenizer import train_tokenizer

    texts = _lm_texts(dataset, int(cfg.recolour))
    if resume_dir is not None:
        tok = load_hf(AutoTokenizer, str(resume_dir), "resume")
        model = load_hf(LlamaForCausalLM, str(resume_dir), "resume")
    else:
        tok = train_tokenizer(texts, int(cfg.tokenizer_vocab))
        model = LlamaForCausalLM(llama_config(LLMConfig(**OmegaConf.to_container(cfg.model.llm)), len(tok)))
    model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id = (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)

    def step_fn(m, batch):
        enc = tok([f"{tok.bos_token}{t}{tok.eos_token}" for t in batch], return_tensors="pt", padding=True,
                  add_special_tokens=False, truncation=True, max_length=int(cfg.model.llm.max_position))
        enc = {k: v.to(next(m.parameters()).device) for k, v in enc.items()}
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return m(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss

    def save(m, path, extra):
        _save_dir(path, lambda tmp: (m.save_pretrained(tmp), tok.save_pretrained(tmp)), extra)

    return model, save, step_fn, texts


def _save_dir(path: Path, write: Callable, extra: dict) -> None:
    from embodied.io import atomic_dir

    with atomic_dir(path) as tmp:
        write(tmp)
        for name, writer in extra.items():
            writer(tmp / name)


# -- stages align and plan: the vision-language model ---------------------------------------------
def model_config(cfg):
    from embodied.modeling import EmbodiedGPTConfig

    return EmbodiedGPTConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))


def build_model(cfg, start_from: Path | None):
    """The job's model config; the weights of `start_from` (a checkpoint) when given, whose bundled
    backbones replace the config's paths (their freeze flags stay the job's)."""
    from embodied.modeling import EmbodiedGPT, read_config

    mcfg = model_config(cfg)
    if start_from is None:
        return EmbodiedGPT(mcfg)
    saved = read_config(start_from)
    for part in ("vision", "llm"):
        if (start_from / part).is_dir() or not getattr(mcfg, part).pretrained:
            getattr(mcfg, part).pretrained = getattr(saved, part).pretrained
    mcfg.eformer.blip2 = None
    return EmbodiedGPT.from_pretrained(start_from, cfg=mcfg)


def training_pairs(dataset, stage: str, recolour: int = 0, balance: bool = False) -> list[dict]:
    """(sample, prompt, answer, E-former text) items. Stage plan mixes the plans with the corpus's yes/no
    success-detection questions. A plan after a re-plan of the loop is asked with the experience the agent
    wrote; a fifth of the other plan questions come with a spent-budget experience for the step in progress
    (as a re-plan after a missed "done" does), so that the planner reads past that line. `recolour` adds that
    many copies of each plan that names palette colours, the colours permuted in its instruction, experience
    and plan alike (the clip unchanged). `balance`: see balanced()."""
    import zlib

    from embodied.datasets.corpus import experience_budget
    from embodied.datasets.egocot import plan_start
    from embodied.modeling import DESCRIBE_PROMPT, plan_prompt

    items = []
    for i, s in enumerate(dataset.samples):
        if stage == "align":
            items.append({"i": i, "prompt": DESCRIBE_PROMPT, "answer": s["caption"], "etext": ""})
            continue
        if not s["qa_only"]:
            experience = s["experience"]
            h = zlib.crc32(s["id"].encode())
            steps = s["planning"].split(plan_start(s["instruction"]), 1)[-1]
            first = steps.split("Step 1: ", 1)[-1].split(".", 1)[0] if "Step 1: " in steps else ""
            if not experience and first and h % 5 == 0:
                experience = experience_budget(1 + h // 5 % 3, first, 81 + h // 15 % 6)
            item = {"i": i, "prompt": plan_prompt(s["instruction"], experience), "answer": s["planning"],
                    "etext": s["instruction"]}
            items.append(item)
            items += recoloured(item, recolour, h)
        for qa in s["qa"]:
            items.append({"i": i, "prompt": qa["question"], "answer": qa["answer"], "etext": qa["question"]})
    return balanced(items, [s.get("task") for s in dataset.samples]) if balance and stage == "plan" else items


def balanced(items: list[dict], tasks: list) -> list[dict]:
    """The items with each task's repeated round(mean / its count) times (at least once): the closed loop's
    own demos make Stack and Lift ten times the other tasks, whose plans then fell to the cube tasks' prior
    (a drawer "grasped" and "lifted", docs/BENCHMARKS.md). Samples with no task form one group."""
    counts: dict = {}
    for it in items:
        counts[tasks[it["i"]]] = counts.get(tasks[it["i"]], 0) + 1
    if len(counts) < 2:
        return items
    mean = len(items) / len(counts)
    return [it for it in items for _ in range(max(1, round(mean / counts[tasks[it["i"]]])))]


def recoloured(item: dict, copies: int, seed: int) -> list[dict]:
    """`copies` versions of a plan item with the palette's colour names permuted in every text. The tiny
    planner otherwise learns which colours the demos' bottom cubes had, not to read the instruction: with 8
    colours, 56 ordered pairs, each seen in a handful of demos, a prior wins over copying (docs/BENCHMARKS.md).
    The clip keeps its colours, so this teaches that a plan's object names come from the instruction."""
    from embodied.envs.base import PALETTE
    from embodied.planners.metrics import colour_pattern

    names = list(PALETTE)
    pattern = colour_pattern(names)
    texts = (item["prompt"], item["answer"], item["etext"])
    if copies <= 0 or not any(pattern.search(t) for t in texts):
        return []
    rng = np.random.default_rng([seed, 7])
    out = []
    for _ in range(copies):
        swap = dict(zip(names, rng.permutation(names)))
        p, a, e = (pattern.sub(lambda m: swap[m.group(1)], t) for t in texts)
        out.append({**item, "prompt": p, "answer": a, "etext": e})
    return out


class _Items:
    """Training items with their clips loaded on access."""

    def __init__(self, dataset, stage: str, recolour: int = 0, balance: bool = False):
        self.dataset, self.items = dataset, training_pairs(dataset, stage, recolour, balance)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int) -> dict:
        it = self.items[j]
        return {**it, "video": self.dataset[it["i"]]["video"]}


def _vl_setup(cfg, dataset, resume_dir: Path | None):
    init = resolve(cfg.init) if cfg.init else None  # a shipped name (tiny/planner) or a directory
    if init is not None and not (init / "config.json").exists():
        raise EmbodiedError(f"init={init}: not an EmbodiedGPT checkpoint (no config.json)")
    model = build_model(cfg, resume_dir or init)
    cams = {json.dumps(s["camera"]) for s in dataset.samples if s.get("camera")}
    if len(cams) == 1:  # the checkpoint says what it watches, so the loop can show it the same
        cameras = json.loads(cams.pop())
        model.cfg.cameras = [cameras] if isinstance(cameras, str) else list(cameras)
        if len(model.cfg.cameras) > model.cfg.vision.views:
            raise EmbodiedError(f"data: clips of {len(model.cfg.cameras)} cameras {model.cfg.cameras}; the model "
                                f"takes {model.cfg.vision.views} (set model.vision.views={len(model.cfg.cameras)})")

    def step_fn(m, batch):
        video = torch.stack([b["video"] for b in batch])
        return m(
            video, [b["prompt"] for b in batch], [b["answer"] for b in batch], eformer_text=[b["etext"] for b in batch]
        )

    def save(m, path, extra):
        m.save_pretrained(path, bundle=bool(cfg.bundle), extra=extra)

    return model, save, step_fn, _Items(dataset, cfg.stage, int(cfg.recolour), bool(cfg.balance_tasks))


def _plan_check(model, dataset, n: int) -> float:
    """Exact-match rate of generated plans on the first n samples (a quick sanity figure, not an eval)."""
    from embodied.modeling import plan_prompt

    model.eval()
    batch = [dataset[i] for i in range(min(n, len(dataset)))]
    outs = model.generate(torch.stack([b["video"] for b in batch]), [plan_prompt(b["instruction"]) for b in batch],
                          max_new_tokens=int(model.cfg.max_answer_len), eformer_text=[b["instruction"] for b in batch])
    return float(np.mean([o.strip() == b["planning"].strip() for o, b in zip(outs, batch)]))
