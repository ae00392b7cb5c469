"""`embodied train-policy demos=PATH n_demos=10 policy.type=egpt policy.planner=CKPT`: behaviour cloning
from a few demos with random-shift augmentation. Every `eval_every` epochs the policy is rolled out
(oracle sub-goals from the env) and the checkpoint with the best rollout success is kept, as robomimic
does, not the one with the lowest validation loss. Resumable from out/last; a curve PNG and TensorBoard.

With frozen perception (egpt, global) the ViT and E-former features of `aug_views` randomly shifted
copies of every frame are computed once, and only the head trains on them.

`policy.type=state` reads no frames: it trains on the demos' low-dim state (obs/proprio, obs/object), so its
demos may come from `embodied collect ... env.cameras=[]`, and its rollouts render nothing. `policy.type=pose`
trains the same head on the same demos and ships it with a frozen pose estimator (`policy.estimator=`, from
train-pose): its rollouts, the checkpoint-choosing ones included, act from the cameras.

`restarts=K` trains the recipe K times (seeds seed..seed+K-1, out/restart<r>), rolls each run's chosen
checkpoint out on `select_episodes` held-out seeds and keeps the best run's as out/best.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from embodied.assets import resolve
from embodied.errors import EmbodiedError
from embodied.io import append_jsonl, read_jsonl, write_json, write_jsonl

STATE = "trainer_state.pt"


def load_demos(path: Path, n_demos: int | None, camera: str | None, pixels: bool = True) -> tuple[dict, dict]:
    """Arrays of the first n demos (the `<n>_demos` subset when the file has it) and the env config; without
    `pixels` (a low-dim policy) no frames are read and the demos need no camera."""
    from embodied.datasets.demos import DemoDataset, demo_names, open_demo_file

    with open_demo_file(path) as f:
        env_cfg = json.loads(f["data"].attrs.get("embodied_env", "{}"))
        names = demo_names(f)
        subset = f"{n_demos}_demos" if n_demos and f"mask/{n_demos}_demos" in f else None
    if not env_cfg:
        raise EmbodiedError(f"{path}: no 'embodied_env' attr; train-policy needs demos from `embodied collect`")
    cams = env_cfg.get("cameras") or []
    camera = camera or (cams[-1] if cams else None)
    if pixels and camera not in cams:
        raise EmbodiedError(f"policy.camera={camera!r}: the demos have cameras {cams}")
    if n_demos and n_demos > len(names):
        raise EmbodiedError(f"n_demos={n_demos}: {path} holds only {len(names)} demos")
    ds = DemoDataset(path, clip_len=1, cameras=[camera] if pixels else [], subset=subset)
    demos = ds.demos[:n_demos] if n_demos else ds.demos
    data = {"camera": camera if pixels else "", "rgb": [], "proprio": [], "actions": [], "subgoal": [], "demo": [],
            "object": []}
    for j, d in enumerate(demos):
        subgoals, idx = d["labels"] if d["labels"] is not None else ([""], np.zeros(len(d["actions"]), int))
        if pixels:
            data["rgb"].append(d["rgb"][camera])
        data["proprio"].append(d["proprio"])
        data["actions"].append(d["actions"])
        if d.get("object") is not None:
            data["object"].append(d["object"])
        data["subgoal"] += [subgoals[i] for i in idx]
        data["demo"] += [j] * len(d["actions"])
    for k in ("rgb", "proprio", "actions"):
        data[k] = torch.from_numpy(np.concatenate(data[k])) if data[k] else None
    # Privileged object state (an auxiliary target, or a low-dim policy's input), when every demo has it.
    data["object"] = torch.from_numpy(np.concatenate(data["object"])) if len(data["object"]) == len(demos) else None
    data["demo"] = np.array(data["demo"])
    return data, env_cfg


def chunk_targets(actions: torch.Tensor, demo: np.ndarray, k: int) -> torch.Tensor:
    """(N, k, A): the next k actions of the same demo, the last one repeated past its end."""
    n = len(actions)
    idx = np.arange(n)[:, None] + np.arange(k)[None]
    end = np.array([np.flatnonzero(demo == d).max() for d in demo])
    return actions[np.minimum(idx, end[:, None])]


# What may change when a run is continued: how long it trains and how its checkpoints are evaluated.
RESUMABLE = ("epochs", "eval_every", "eval_episodes", "eval_seed", "eval_workers", "eval_horizon", "ties",
             "final_episodes", "final_seed", "out", "resume", "restarts", "select_episodes", "select_seed")


def _check_types(pcfg: dict, config_class: type) -> None:
    """The policy keys that are set, against the type's config class (its defaults live there, not in the YAML):
    `policy.hidden=big` fails here, before any data is read."""
    import dataclasses

    from embodied.errors import check_fields

    fields = {f.name for f in dataclasses.fields(config_class)} - {"estimator"}  # a path here, its config there
    check_fields(config_class, {k: v for k, v in pcfg.items() if v is not None and k in fields}, "policy.")


def run(cfg: DictConfig, default_dir: Path) -> dict:
    from embodied.envs.runner import run_episodes
    from embodied.policies import load_policy, make_policy
    from embodied.runconfig import check_continuation, save_config

    if not cfg.demos:
        raise EmbodiedError("demos is not set: give a demo file from `embodied collect`")
    if cfg.ties not in ("earlier", "later"):
        raise EmbodiedError(f"ties={cfg.ties!r}: expected earlier or later")
    from embodied.policies import policy_classes

    if cfg.policy.get("type") not in policy_classes():  # before the demos are read
        raise EmbodiedError(f"policy.type={cfg.policy.get('type')!r}: expected one of {sorted(policy_classes())}")
    _check_types(OmegaConf.to_container(cfg.policy, resolve=True), policy_classes()[cfg.policy.type].config_class)
    if cfg.policy.get("type") == "pose" and not cfg.policy.get("estimator"):
        raise EmbodiedError("policy.type=pose needs policy.estimator: a train-pose checkpoint (its best/ or last/)")
    out = Path(cfg.out) if cfg.out else default_dir
    if cfg.get("restarts") is not None and int(cfg.restarts) != 1:
        return _best_of_restarts(cfg, out)
    torch.manual_seed(int(cfg.seed))
    low_dim = cfg.policy.get("type") in ("state", "pose")  # pose: a state head, trained on the demos' states
    data, env_cfg = load_demos(Path(cfg.demos), int(cfg.n_demos) if cfg.n_demos else None, cfg.policy.camera,
                               pixels=not low_dim)
    env_cfg["cameras"] = [data["camera"]] if data["camera"] else []  # rollouts render only what the policy sees
    if cfg.eval_horizon:
        env_cfg["horizon"] = int(cfg.eval_horizon)
    n_scenes = int(cfg.aux_scenes or 0)
    pcfg = OmegaConf.to_container(cfg.policy, resolve=True)
    pcfg.update(camera=data["camera"], proprio_dim=int(data["proprio"].shape[1]),
                action_dim=int(data["actions"].shape[1]), env=env_cfg,
                train_info={"demos": str(cfg.demos), "n_demos": cfg.n_demos, "seed": int(cfg.seed),
                            **({"aux_scenes": n_scenes} if n_scenes else {})})
    if pcfg.pop("aux_object", False):
        if pcfg.get("type") not in ("egpt", "global"):
            raise EmbodiedError(
                f"policy.aux_object=true: only the egpt and global policies have an object head, "
                f"not {pcfg.get('type')!r}"
            )
        if data["object"] is None:
            raise EmbodiedError(f"policy.aux_object=true: {cfg.demos} has no obs/object in every demo")
        pcfg["object_dim"] = int(data["object"].shape[1])
    if low_dim:
        pcfg.update(_state_inputs(data, env_cfg, str(cfg.demos)))
    estimator = _pose_estimator(pcfg, env_cfg) if pcfg.get("type") == "pose" else None
    if estimator is not None:  # the head learns on the object state in the form the estimator gives it
        from embodied.policies.pose.estimator import canonical_object

        data["object"] = canonical_object(data["object"], data["proprio"], estimator.cfg.blocks)
    if n_scenes and not (pcfg.get("object_dim") and pcfg.get("freeze_perception", True)):
        raise EmbodiedError(f"aux_scenes={n_scenes}: scene frames train the object-state target only: "
                            "they need policy.aux_object=true and frozen perception (egpt or global)")
    if pcfg.get("planner"):
        pcfg["planner"] = str(resolve(pcfg["planner"]).resolve())  # a shipped name (tiny/planner) or a directory
    last, best_dir = out / "last", out / "best"
    resume = bool(cfg.resume) and (last / STATE).exists()
    if resume:
        check_continuation(cfg, out, RESUMABLE)
    save_config(cfg, out)
    s = torch.load(last / STATE, weights_only=True) if resume else None
    # A finished run (reruns, and every run of restarts=K) only writes its summary: no scenes, no features.
    training = s is None or int(s["epoch"]) < int(cfg.epochs)
    policy = load_policy(last) if resume else make_policy(pcfg)
    if estimator is not None and not resume:
        policy.load_estimator(estimator)
    obj = data["object"] if policy.object_dim else None  # aux target or low-dim input
    scenes = None
    if n_scenes and training:
        from embodied.datasets.scenes import scene_frames

        scenes = scene_frames(env_cfg, data["camera"], n_scenes, int(cfg.aux_scene_seed))
    if not resume:
        policy.set_normalization(data["proprio"])
        if obj is not None:  # over the scenes too: an object the demos never move has no spread of its own
            policy.set_object_normalization(obj if scenes is None else torch.cat([obj, scenes["object"]]))
    policy.train()
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=float(policy.cfg.lr))
    state = {"epoch": 0, "best": -1.0, "history": []}
    if resume:
        opt.load_state_dict(s["optimizer"])
        torch.set_rng_state(s["rng"])
        state = {"epoch": int(s["epoch"]), "best": float(s["best"])}
        # Epochs logged after the last checkpoint (a run stopped between the two writes) are trained again.
        state["history"] = [r for r in read_jsonl(out / "history.jsonl", repair=True) if r["epoch"] <= state["epoch"]]
        write_jsonl(out / "history.jsonl", state["history"])
        print(f"resuming from {last} at epoch {state['epoch']}")

    targets = chunk_targets(data["actions"], data["demo"], policy.cfg.chunk)
    n = len(targets)
    batch = {"rgb": data["rgb"], "proprio": data["proprio"], "action": targets, "subgoal": data["subgoal"],
             "object": obj}
    gen = torch.Generator().manual_seed(int(cfg.seed))
    cache = None
    if policy.frozen_perception and training:  # features of `aug_views` shifted copies, once
        cache = {"data": policy.cache_features(data, int(cfg.aug_views), gen, int(cfg.batch_size)), "scenes": scenes}
        if scenes is not None:
            cache["scene_data"] = policy.cache_features(scenes, int(cfg.aug_views), gen, int(cfg.batch_size))
    if resume and "gen" in s:  # the augmentation stream where it stopped: a resumed run equals an unbroken one
        gen.set_state(s["gen"])

    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(out / "tb"))
    eval_seeds = range(int(cfg.eval_seed), int(cfg.eval_seed) + int(cfg.eval_episodes))
    bar = tqdm(
        range(state["epoch"], int(cfg.epochs)), initial=state["epoch"], total=int(cfg.epochs), desc="train-policy"
    )
    for epoch in bar:
        policy.train()
        perm = np.random.default_rng([int(cfg.seed), epoch]).permutation(n)
        losses = []
        for b in range(0, n, int(cfg.batch_size)):
            idx = torch.from_numpy(perm[b: b + int(cfg.batch_size)])
            losses.append(policy.train_on_batch(batch, idx, opt, gen, cache))
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        tb.add_scalar("loss", rec["loss"], epoch + 1)
        if (epoch + 1) % int(cfg.eval_every) == 0 or epoch + 1 == int(cfg.epochs):
            policy.eval()
            res = run_episodes(env_cfg, policy.actor, eval_seeds, workers=int(cfg.eval_workers),
                               total=len(eval_seeds), desc=f"eval epoch {epoch + 1}")
            rec["success"] = float(np.mean([r["success"] for r in res]))
            tb.add_scalar("success", rec["success"], epoch + 1)
            # ties=later: at equal measured success the longer-trained checkpoint wins (few eval episodes
            # tie often, and a 10-demo pixel-branch policy keeps improving long after its first good score)
            if rec["success"] > state["best"] or (cfg.ties == "later" and rec["success"] == state["best"]):
                state["best"] = rec["success"]
                policy.save_pretrained(best_dir)
        append_jsonl(out / "history.jsonl", rec)
        state["history"].append(rec)
        bar.set_postfix({k: f"{v:.3f}" for k, v in rec.items() if k != "epoch"})
        ckpt = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "gen": gen.get_state(), "epoch": epoch + 1,
                "best": state["best"]}
        policy.save_pretrained(last, {STATE: lambda p: torch.save(ckpt, p)})
    tb.close()
    _plot(state["history"], out / "curve.png")
    summary = {"policy": policy.cfg.type, "demos": str(cfg.demos), "n_demos": cfg.n_demos, "camera": data["camera"],
               "samples": n, "epochs": int(cfg.epochs), "best_eval_success": state["best"], "best": str(best_dir),
               "eval_episodes": len(eval_seeds)}
    summary.update(_rollout_success(best_dir, cfg, "final", env_cfg))  # the selected checkpoint on fresh seeds
    write_json(out / "summary.json", summary)
    print(json.dumps(summary))
    return summary


def _pose_estimator(pcfg: dict, env_cfg: dict):
    """policy.type=pose: the train-pose checkpoint named by policy.estimator, its config put in the policy's and
    its cameras (and frame size) in the evaluation env's, since the policy reads the cameras at rollout."""
    from embodied.policies.pose import PoseEstimator

    path = str(pcfg["estimator"])
    estimator = PoseEstimator.from_pretrained(path)
    if estimator.cfg.blocks * 7 != pcfg["object_dim"]:
        raise EmbodiedError(f"policy.estimator={path} estimates {estimator.cfg.blocks} objects; the demos' obs/object "
                            f"has {pcfg['object_dim']} numbers ({pcfg['object_dim'] // 7} objects)")
    made_for = estimator.cfg.env.get("task")
    if made_for and made_for != env_cfg.get("task"):
        raise EmbodiedError(
            f"policy.estimator={path} was trained on {made_for} frames; the demos are {env_cfg.get('task')}"
        )
    pcfg["estimator"] = dataclasses.asdict(estimator.cfg)
    env_cfg.update(cameras=list(estimator.cfg.cameras), height=estimator.cfg.env.get("height", env_cfg.get("height")),
                   width=estimator.cfg.env.get("width", env_cfg.get("width")))
    return estimator


def _state_inputs(data: dict, env_cfg: dict, demos: str) -> dict:
    """What a low-dim policy reads, from its demos: the object state's size, its pose blocks (robosuite) and
    the skills (first words) of the sub-goals."""
    if data["object"] is None:
        raise EmbodiedError(f"policy.type=state or pose: {demos} has no obs/object in every demo")
    from embodied.policies.state_bc.policy import POSE

    dim = int(data["object"].shape[1])
    blocks = dim // POSE if env_cfg.get("backend") == "robosuite" and dim % POSE == 0 else 0
    skills = sorted({s.split()[0].lower() for s in data["subgoal"] if s.split()})
    return {"object_dim": dim, "pose_blocks": blocks, "skills": skills}


def _rollout_success(path: Path, cfg: DictConfig, kind: str, env_cfg: dict | None = None) -> dict:
    """The policy in `path` on the `<kind>_episodes` seeds from `<kind>_seed` (in `env_cfg`, else the env it
    was trained for): success rate, episodes and 95% Wilson interval; nothing when there are no such episodes."""
    from embodied.envs.runner import run_episodes
    from embodied.metrics import wilson
    from embodied.policies import load_policy

    n = int(cfg[f"{kind}_episodes"])
    if n <= 0:
        return {}
    policy = load_policy(path)
    seeds = range(int(cfg[f"{kind}_seed"]), int(cfg[f"{kind}_seed"]) + n)
    res = run_episodes(
        env_cfg or policy.cfg.env, policy.actor, seeds, workers=int(cfg.eval_workers), total=n, desc=f"{kind} eval"
    )
    k = sum(r["success"] for r in res)
    return {f"{kind}_success": k / n, f"{kind}_episodes": n, f"{kind}_wilson95": list(wilson(k, n))}


def _best_of_restarts(cfg: DictConfig, out: Path) -> dict:
    """K runs of one recipe, seeds seed..seed+K-1, each choosing its checkpoint as usual; the one whose
    checkpoint does best on `select_episodes` held-out seeds becomes out/best. Ten-demo policies differ
    far more between training seeds than between the checkpoints of one run (46 points on Meta-World
    bin-picking from the corner camera), and a run's own 5-episode evaluations do not tell its runs apart.
    The selection seeds are disjoint from the evaluation and final seeds, so the final figure is not chosen on."""
    import shutil

    from embodied.io import atomic_dir
    from embodied.runconfig import check_continuation, save_config

    k, n_sel = int(cfg.restarts), int(cfg.select_episodes)
    if k < 1 or n_sel < 1:
        raise EmbodiedError(f"restarts={k}, select_episodes={n_sel}: expected whole numbers of at least 1")
    if (out / "config.yaml").exists():
        check_continuation(cfg, out, RESUMABLE)
    # Judged runs are not judged again; resume=false trains them afresh, so their old verdicts do not count
    # (a later line of the file overrides an earlier one for the same run).
    resume = bool(cfg.resume) and (out / "selection.jsonl").exists()
    done = {(r["restart"], r["epochs"], r["select_seed"], r["select_episodes"]): r
            for r in read_jsonl(out / "selection.jsonl", repair=True)} if resume else {}
    rows = []
    for r in range(k):
        sub = cfg.copy()
        sub.restarts, sub.seed, sub.out, sub.final_episodes = 1, int(cfg.seed) + r, str(out / f"restart{r}"), 0
        s = run(sub, out)
        if r == 0:  # after the first run has checked the settings: a refused job writes nothing here
            save_config(cfg, out)
        key = (r, s["epochs"], int(cfg.select_seed), n_sel)
        if key not in done:
            done[key] = {
                "restart": r,
                "seed": int(sub.seed),
                "epochs": s["epochs"],
                "select_seed": int(cfg.select_seed),
                "select_episodes": n_sel,
                "best_eval_success": s["best_eval_success"],
                **_rollout_success(Path(s["best"]), cfg, "select"),
            }
            append_jsonl(out / "selection.jsonl", done[key])
        rows.append(done[key])
    win = choose_restart(rows)
    with atomic_dir(out / "best") as tmp:
        shutil.copytree(out / f"restart{win['restart']}" / "best", tmp, dirs_exist_ok=True)
    summary = {**json.loads((out / f"restart{win['restart']}" / "summary.json").read_text()),
               "best": str(out / "best"), "restart": win["restart"], "seed": win["seed"], "restarts": rows}
    summary.update(_rollout_success(out / "best", cfg, "final"))
    write_json(out / "summary.json", summary)
    print(json.dumps(summary))
    return summary


def choose_restart(rows: list[dict]) -> dict:
    """The run with the best selection success; on a tie the better in-training evaluation, then the first."""
    return max(rows, key=lambda r: (r["select_success"], r["best_eval_success"], -r["restart"]))


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embodied.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:blue")
    ax.set_xlabel("epoch")
    ax.set_ylabel("BC loss", color="tab:blue")
    ax.set_yscale("log")
    ev = [h for h in history if "success" in h]
    if ev:
        ax2 = ax.twinx()
        ax2.plot([h["epoch"] for h in ev], [h["success"] for h in ev], "o-", color="tab:green")
        ax2.set_ylabel("rollout success", color="tab:green")
        ax2.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
