"""`embodied rerender`: observations re-rendered from a demo file's stored simulator states.

As robomimic's dataset_states_to_obs, each demo's states are restored one by one and the cameras render them again
(with `cameras=` other views). `copies=K` adds K recoloured copies of every demo: the same states and actions with
the cubes painted in other palette colours, and the instruction and sub-goals renamed to match. Colour-conditioned
policies see each motion with many colour pairs instead of one. The originals come first, then copy 1 of every
demo, and so on, so `n_demos=N` in train-policy still means the first N original demos.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from embodied.datasets import DemoWriter
from embodied.datasets.demos import demo_names, open_demo_file
from embodied.envs import make_env
from embodied.envs.base import PALETTE
from embodied.errors import EmbodiedError
from embodied.io import remove_stale_temps


def run(cfg: DictConfig, default_dir: Path) -> Path:
    from embodied.runconfig import save_config

    if not cfg.demos:
        raise EmbodiedError("demos is not set: give a demo file from `embodied collect`")
    src = Path(cfg.demos)
    out = Path(cfg.out) if cfg.out else default_dir / "demos.hdf5"
    if out.suffix not in (".hdf5", ".h5"):
        raise EmbodiedError(f"out: '{out}' should end in .hdf5")
    if out.resolve() == src.resolve():
        raise EmbodiedError(f"out: '{out}' is the input file; write the result to a new file")
    if out.exists():
        raise EmbodiedError(f"out={out} exists; rerender does not overwrite demos: use another out=, or remove it")
    remove_stale_temps(out)  # what a killed run left
    copies = int(cfg.copies)
    if copies < 0:
        raise EmbodiedError(f"copies: expected 0 or more, got {copies}")
    with open_demo_file(src) as f:
        env_cfg = json.loads(f["data"].attrs.get("embodied_env", "{}"))
        env_args = json.loads(f["data"].attrs.get("env_args", "{}"))
        names = demo_names(f)
        if not env_cfg:
            raise EmbodiedError(f"{src}: no 'embodied_env' attr; rerender needs demos from `embodied collect`")
        n = len(names) if cfg.n_demos is None else int(cfg.n_demos)
        if not 0 < n <= len(names):
            raise EmbodiedError(f"n_demos={cfg.n_demos}: {src} holds {len(names)} demos")
        demos = [_read(f["data"][name]) for name in names[:n]]
    if cfg.cameras is not None:
        env_cfg["cameras"] = list(cfg.cameras)
    if cfg.get("size") is not None:
        if int(cfg.size) < 16:
            raise EmbodiedError(f"size: expected a frame side of 16 pixels or more, got {cfg.size}")
        env_cfg["height"] = env_cfg["width"] = int(cfg.size)
    env_cfg["perturbation"] = None
    env = make_env(env_cfg)
    rng = np.random.default_rng(int(cfg.seed))
    try:
        if copies:
            env.reset(seed=demos[0]["seed"])
            env.unwrapped.set_colors(getattr(env.unwrapped, "colors", ()))  # fails early: nothing to recolour
        # The next_obs of a demo's last step has no stored state to render, so the result holds obs only.
        with DemoWriter(out, env_args, env_cfg, next_obs=False) as writer:
            bar = tqdm(total=n * (1 + copies), desc="rerender", unit="demo")
            for copy in range(1 + copies):
                for d in demos:
                    env.reset(seed=d["seed"])  # the scene (and, for copy 0, the colours) the demo was recorded in
                    recorded = list(getattr(env.unwrapped, "colors", ()))
                    if copy:
                        k = len(env.unwrapped.colors)
                        env.unwrapped.set_colors(tuple(rng.choice(list(PALETTE), size=k, replace=False)))
                    name = writer.add(_rendered(env.unwrapped, d), d["seed"])
                    g = writer.data[name]
                    g.attrs["source_demo"] = d["name"]
                    g.attrs["colors"] = json.dumps(list(getattr(env.unwrapped, "colors", ())))
                    if d["agent_log"]:  # a loop demo's log (the corpus reads its plans and checks), renamed to match
                        g.attrs["agent_log"] = _renamed(d["agent_log"], recorded, list(env.unwrapped.colors))
                    bar.update()
            bar.close()
            writer.close()
    finally:
        env.close()
    save_config(cfg, out.with_name(out.stem + "_config"))
    print(json.dumps({"out": str(out), "demos": n, "copies": copies, "written": n * (1 + copies)}))
    return out


def _read(g) -> dict:
    missing = [k for k in ("states", "actions", "rewards", "subgoal_index") if k not in g]
    missing += [f"attr {k}" for k in ("seed",) if k not in g.attrs]
    if missing:
        raise EmbodiedError(f"{g.file.filename}: {g.name} has no {', '.join(missing)}; "
                            "rerender needs demos from `embodied collect`")
    return {"name": g.name.split("/")[-1], "seed": int(g.attrs["seed"]), "states": g["states"][()],
            "actions": g["actions"][()], "rewards": g["rewards"][()], "subgoal_index": g["subgoal_index"][()],
            "success": bool(g.attrs.get("success", True)), "agent_log": str(g.attrs.get("agent_log", ""))}


def _renamed(text: str, old: list[str], new: list[str]) -> str:
    """`text` with each colour name in `old` replaced by the one at its place in `new`, all at once."""
    from embodied.planners.metrics import colour_pattern

    names = dict(zip(old, new))
    return colour_pattern(names).sub(lambda m: names[m.group(1)], text) if names else text


def _rendered(env, d: dict) -> dict:
    """One demo as the rollout runner records it, its observations rendered from the stored states."""
    obs = [env.set_sim_state(s) for s in d["states"]]
    infos = [{"state": s, "subgoal_index": int(i), "instruction": env.instruction, "subgoals": list(env.subgoals),
              "success": False} for s, i in zip(d["states"], d["subgoal_index"])]
    infos[-1]["success"] = d["success"]
    return {"obs": obs, "actions": d["actions"], "rewards": d["rewards"], "infos": infos}
