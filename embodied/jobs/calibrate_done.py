"""`embodied calibrate-done planner.path=DIR data=corpus/egocot.jsonl`: fit the planner's per-verb thresholds for
its "is it done?" answers on the corpus's labelled questions and save them in the checkpoint
(planners/calibration.py). The loop's planner reads them from there."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig, default_dir: Path) -> dict:
    import torch

    from embodied.assets import resolve
    from embodied.checkpoint import load_model
    from embodied.datasets.egocot import EgoCOTDataset
    from embodied.errors import EmbodiedError
    from embodied.io import write_json
    from embodied.planners.calibration import THRESHOLDS_FILE, done_margins, fit_thresholds

    if not cfg.planner.path or not cfg.data:
        raise EmbodiedError("calibrate-done needs planner.path=CHECKPOINT_DIR and data=EGOCOT_JSONL")
    path = resolve(cfg.planner.path)
    if not (path / "config.json").exists():
        raise EmbodiedError(f"planner.path={cfg.planner.path}: not an EmbodiedGPT checkpoint (no config.json)")
    if int(cfg.per_class) < 1:
        raise EmbodiedError(f"per_class: expected a positive number of questions, got {cfg.per_class}")
    torch.manual_seed(int(cfg.seed))
    model = load_model(path).eval()
    dataset = EgoCOTDataset(cfg.data, n_frames=model.cfg.vision.frames)
    margins = done_margins(model, dataset, int(cfg.per_class), int(cfg.seed))
    if not margins:
        raise EmbodiedError(f"data={cfg.data}: no \"Is '...' done?\" questions to calibrate on")
    thresholds = fit_thresholds(margins, max_fpr=float(cfg.max_fpr))
    counts = {v: [sum(y for _, y in m), sum(not y for _, y in m)] for v, m in margins.items()}
    result = {"thresholds": thresholds, "questions_yes_no": counts, "data": str(cfg.data),
              "per_class": int(cfg.per_class), "max_fpr": float(cfg.max_fpr),
              "margins": {v: [[round(a, 4), bool(y)] for a, y in m] for v, m in margins.items()}}
    write_json(path / THRESHOLDS_FILE, result)  # atomic: the planner never reads half a file
    for v, t in thresholds.items():
        print(f"[calibrate-done] {v}: threshold {t:+.3f} ({counts[v][0]} yes, {counts[v][1]} no)", flush=True)
    return result
