"""`embodied train-done planner.path=DIR data=corpus/egocot.jsonl`: fit the planner's success-detection head
(a probe per sub-goal kind on the frozen ViT's clip features, planners/done_head.py) on the corpus's labelled
"is it done?" questions and save it in the checkpoint, where the loop's planner reads it."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig, default_dir: Path) -> dict:
    import torch

    from embodied.assets import resolve
    from embodied.datasets.egocot import EgoCOTDataset
    from embodied.errors import EmbodiedError
    from embodied.modeling import EmbodiedGPT
    from embodied.planners.done_head import DoneHead, done_samples

    if not cfg.planner.path or not cfg.data:
        raise EmbodiedError("train-done needs planner.path=CHECKPOINT_DIR and data=EGOCOT_JSONL")
    path = resolve(cfg.planner.path)
    if not (path / "config.json").exists():
        raise EmbodiedError(f"planner.path={cfg.planner.path}: not an EmbodiedGPT checkpoint (no config.json)")
    if not 0 <= float(cfg.max_fpr) < 1:
        raise EmbodiedError(f"max_fpr: expected a share in [0, 1), got {cfg.max_fpr}")
    if int(cfg.min_per_class) < 2:
        raise EmbodiedError(f"min_per_class: expected at least 2 questions, got {cfg.min_per_class}")
    torch.manual_seed(int(cfg.seed))
    model = EmbodiedGPT.from_pretrained(path).eval()
    samples = done_samples(model, EgoCOTDataset(cfg.data, n_frames=model.cfg.vision.frames))
    if not samples:
        raise EmbodiedError(f"data={cfg.data}: no \"Is '...' done?\" questions to fit on")
    head, report = DoneHead.fit(samples, max_fpr=float(cfg.max_fpr), min_per_class=int(cfg.min_per_class),
                                l2=float(cfg.l2), min_gain=float(cfg.min_gain))
    head.save(path, {"data": str(cfg.data), "max_fpr": float(cfg.max_fpr), "kinds": report})  # atomic writes
    for k, r in report.items():
        if "heldout" in r:
            h, lm = r["heldout"], r["llm"]
            print(f"[train-done] '{k}': held-out F1 {h['f1']:.2f} (TPR {h['tpr']:.2f}, FPR {h['fpr']:.3f}, "
                  f"{h['yes']} yes, {h['no']} no), threshold {r['threshold']:+.2f}; the LLM's F1 {lm['f1']:.2f}: "
                  f"{'the probe answers' if r['probe'] else 'the LLM answers'}", flush=True)
        else:
            print(f"[train-done] '{k}': {r['yes']} yes, {r['no']} no: too few, the LLM answers it", flush=True)
    return {"kinds": sorted(head.probes), "report": report}
