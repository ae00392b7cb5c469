"""robomimic's side of bench/vs_robomimic.py. Runs ONLY in the robomimic venv (bench/robomimic/setup.sh), never
imports this project: the bench talks to it through files (train) and a pipe (serve).

    python run.py train --dataset D.hdf5 --out DIR [--seconds S]   robomimic's own trainer, image BC-RNN, resumable
    python run.py serve --ckpt DIR/.../last.pth                     a policy behind stdin/stdout

train: robomimic's paper recipe for image BC-RNN (generate_paper_configs.py: ResNet-18 + spatial softmax 32
keypoints, 76x76 random crops of 84x84 frames, both cameras, eef pos/quat + gripper, GMM head, 2-layer LSTM with
1000 hidden units, sequence 10, batch 16, Adam 1e-4), with its evaluation rollouts off (the bench scores the policy in
this project's env) and short epochs (--epoch-steps, default 20 gradient steps), so a chunk stopped at its time
limit loses little: robomimic saves last.pth after every epoch and `--resume` continues from it.

serve: numpy arrays over the pipe (np.lib.format, no pickle): in, a command (0 reset, 1 act) then for act the five
observations in OBS_KEYS order; out, the action.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import time
from pathlib import Path

import numpy as np
import torch

OBS_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "agentview_image", "robot0_eye_in_hand_image")


class _Pipe:
    """A pipe end for np.lib.format: numpy reads and writes real files with fromfile/tofile, which need a seekable
    file; through read() and write() it works on a pipe."""

    def __init__(self, raw):
        self.raw = raw

    def read(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            b = self.raw.read(left)
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        return b"".join(chunks)

    def write(self, b) -> None:
        self.raw.write(b)

    def flush(self) -> None:
        self.raw.flush()


def _import_torchvision() -> None:
    """PyPI's torchvision wheels are CUDA builds; with the CPU torch their C++ ops do not load and the import fails
    registering fake kernels for two of them. Declaring those two schemas lets the Python part (the ResNet-18
    robomimic builds, the transforms) import; robomimic never calls the ops."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _import_torchvision.lib = lib  # keep the definitions alive
        import torchvision  # noqa: F401


def _config(dataset: str, out: Path, epoch_steps: int) -> dict:
    from robomimic.config import config_factory

    config = config_factory("bc")
    with config.values_unlocked():
        config.experiment.name = "bc_rnn_image"
        config.experiment.validate = False
        config.experiment.logging.terminal_output_to_txt = True
        config.experiment.logging.log_tb = True
        config.experiment.save.enabled = True
        config.experiment.save.every_n_epochs = 10**9  # last.pth, written every epoch, is the one scored
        config.experiment.epoch_every_n_steps = epoch_steps
        config.experiment.rollout.enabled = False
        config.train.data = dataset
        config.train.output_dir = str(out.resolve())
        config.train.num_data_workers = 0  # 2 cores: the trainer itself uses both
        config.train.hdf5_cache_mode = "low_dim"
        config.train.hdf5_load_next_obs = False  # the re-rendered file holds obs only
        config.train.batch_size = 16
        config.train.num_epochs = 300000 // epoch_steps  # robomimic's 600 x 500 steps
        config.train.seq_length = 10
        config.algo.rnn.enabled = True
        config.algo.rnn.horizon = 10
        config.algo.rnn.hidden_dim = 1000
        config.algo.optim_params.policy.learning_rate.initial = 1e-4
        config.algo.actor_layer_dims = ()
        config.algo.gmm.enabled = True
        obs = config.observation
        obs.modalities.obs.low_dim = list(OBS_KEYS[:3])
        obs.modalities.obs.rgb = list(OBS_KEYS[3:])
        obs.modalities.goal.low_dim = []
        obs.modalities.goal.rgb = []
        rgb = obs.encoder.rgb
        rgb.core_class = "VisualCore"
        rgb.core_kwargs.feature_dimension = 64
        rgb.core_kwargs.backbone_class = "ResNet18Conv"
        rgb.core_kwargs.backbone_kwargs.pretrained = False
        rgb.core_kwargs.backbone_kwargs.input_coord_conv = False
        rgb.core_kwargs.pool_class = "SpatialSoftmax"
        rgb.core_kwargs.pool_kwargs.num_kp = 32
        rgb.core_kwargs.pool_kwargs.learnable_temperature = False
        rgb.core_kwargs.pool_kwargs.temperature = 1.0
        rgb.core_kwargs.pool_kwargs.noise_std = 0.0
        rgb.obs_randomizer_class = "CropRandomizer"
        rgb.obs_randomizer_kwargs.crop_height = 76
        rgb.obs_randomizer_kwargs.crop_width = 76
        rgb.obs_randomizer_kwargs.num_crops = 1
        rgb.obs_randomizer_kwargs.pos_enc = False
    return json.loads(config.dump())


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "robomimic_config.json"
    if not cfg_path.exists():
        tmp = cfg_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_config(args.dataset, out, int(args.epoch_steps)), indent=2))
        os.replace(tmp, cfg_path)
    exp = out / "bc_rnn_image"
    resume = any(exp.glob("*/last.pth"))
    torch.set_num_threads(int(args.threads))
    argv = ["train.py", "--config", str(cfg_path), "--dataset", args.dataset] + (["--resume"] if resume else [])
    # After each epoch robomimic writes last.pth (what --resume reads); progress.json then records how far the run
    # is, for the bench's table. robomimic's loop has no time limit: a chunk ends at the first epoch past --seconds.
    import robomimic.utils.train_utils as TrainUtils

    epoch_steps = json.loads(cfg_path.read_text())["experiment"]["epoch_every_n_steps"]
    progress = out / "progress.json"
    before = json.loads(progress.read_text())["train_seconds"] if progress.exists() else 0.0
    start = time.time()
    deadline = start + float(args.seconds) if args.seconds else float("inf")
    original = TrainUtils.save_model

    def save_and_record(*a, **k):
        original(*a, **k)
        if not str(k.get("ckpt_path", "")).endswith("last.pth"):
            return
        epoch = int(k["variable_state"]["epoch"])
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(json.dumps({"epoch": epoch, "steps": epoch * epoch_steps,
                                   "train_seconds": round(before + time.time() - start, 1)}))
        os.replace(tmp, progress)
        if time.time() > deadline:
            print(f"run.py: chunk time ({args.seconds} s) used; last.pth saved; rerun to resume", flush=True)
            sys.exit(0)

    TrainUtils.save_model = save_and_record
    sys.argv = argv
    runpy.run_path(str(Path(args.scripts) / "train.py"), run_name="__main__")


def serve(args: argparse.Namespace) -> None:
    # The pipe is stdout; robomimic prints (warnings at import, summaries): they go to stderr instead.
    out = _Pipe(os.fdopen(os.dup(1), "wb"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _import_torchvision()
    import robomimic.utils.file_utils as FileUtils

    torch.set_num_threads(1)
    policy, _ = FileUtils.policy_from_checkpoint(ckpt_path=args.ckpt, device=torch.device("cpu"), verbose=False)
    inp = _Pipe(sys.stdin.buffer)
    while True:
        try:
            cmd = int(np.lib.format.read_array(inp, allow_pickle=False))
        except ValueError:  # the bench closed the pipe
            return
        if cmd == 0:
            policy.start_episode()
            continue
        ob = {k: np.lib.format.read_array(inp, allow_pickle=False) for k in OBS_KEYS}
        with torch.no_grad():
            action = np.asarray(policy(ob=ob), np.float32)
        np.lib.format.write_array(out, action, allow_pickle=False)
        out.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--dataset", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--seconds", type=float, default=None, help="end the chunk at the first epoch past this")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--epoch-steps", type=int, default=20, help="gradient steps per robomimic epoch (a new run only)")
    t.add_argument("--scripts", default=str(Path(sys.prefix) / "robomimic-scripts"),
                   help="robomimic's scripts/ folder (setup.sh copies it into the venv)")
    s = sub.add_parser("serve")
    s.add_argument("--ckpt", required=True)
    args = ap.parse_args()
    if args.cmd == "train":
        _import_torchvision()
        train(args)
    else:
        serve(args)


if __name__ == "__main__":
    main()
