"""Parallel rollouts over gymnasium vector envs, one JSONL record per finished episode.

Each episode is identified by its seed; a rerun with the same JSONL skips seeds already recorded,
so an interrupted evaluation resumes where it stopped.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Sequence

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from embodied.envs import make_env
from embodied.errors import EmbodiedError, interrupted
from embodied.io import append_jsonl, read_jsonl


class GuardedEnv(gym.Wrapper):
    """Runs inside a worker. An exception in the simulator, or a MuJoCo instability (NaN/Inf
    accelerations, after which MuJoCo silently resets its state), ends the episode with info["error"];
    the env is then rebuilt from its config at the next reset, and the run goes on."""

    def __init__(self, cfg: dict):
        import mujoco

        super().__init__(make_env(cfg))
        self.cfg, self._broken, self._last, self._warnings = cfg, False, None, 0
        w = mujoco.mjtWarning  # resolved once: _bad_count runs on every step
        self._bad = [int(w.mjWARN_BADQPOS), int(w.mjWARN_BADQVEL), int(w.mjWARN_BADQACC)]

    def _bad_count(self) -> int:
        data = getattr(self.env.unwrapped, "mujoco_data", lambda: None)()
        if data is None:
            return 0
        return sum(int(data.warning[i].number) for i in self._bad)

    def reset(self, **kwargs):
        if self._broken:
            self.env.close()
            self.env = make_env(self.cfg)
            self._broken = False
        obs, info = self.env.reset(**kwargs)
        self._last, self._warnings = (obs, info), self._bad_count()
        return obs, info

    def step(self, action):
        try:
            obs, reward, term, trunc, info = self.env.step(action)
        except Exception as e:  # noqa: BLE001 -- any simulator failure ends only this episode
            if interrupted(e):  # Ctrl-C, raised inside numba code, came out as another exception
                raise KeyboardInterrupt from e
            self._broken = True
            obs, info = self._last
            return obs, 0.0, True, False, {**info, "success": False, "error": f"{type(e).__name__}: {e}"[:500]}
        bad = self._bad_count()
        if bad > self._warnings:
            self._broken = True
            info = {**info, "success": False,
                    "error": f"MuJoCo instability at step {info.get('t')}: NaN/Inf or huge values in the state"}
            return obs, reward, True, False, info
        self._last = (obs, info)
        return obs, reward, term, trunc, info


def _env_fn(cfg: dict) -> Callable[[], gym.Env]:
    def fn():
        return GuardedEnv(cfg)

    return fn


def make_vector_env(cfg: dict, workers: int, asynchronous: bool | None = None) -> gym.vector.VectorEnv:
    """`workers` copies of the env; subprocesses unless `asynchronous=False` (or one worker)."""
    if workers < 1:
        raise EmbodiedError(f"workers={workers}: expected at least 1")
    fns = [_env_fn(cfg) for _ in range(workers)]
    mode = gym.vector.AutoresetMode.DISABLED  # we reset each slot ourselves, with the next episode's seed
    if asynchronous if asynchronous is not None else workers > 1:
        # forkserver: workers never inherit the parent's OpenGL contexts or torch threads.
        return gym.vector.AsyncVectorEnv(fns, context="forkserver", autoreset_mode=mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


def slot(batch: Any, i: int) -> Any:
    """Observation of one sub-env out of a batched (possibly nested) dict."""
    if isinstance(batch, dict):
        return {k: slot(v, i) for k, v in batch.items()}
    return batch[i]


def slot_info(info: dict, i: int) -> dict:
    out = {}
    for k, v in info.items():
        if k.startswith("_"):
            continue
        mask = info.get(f"_{k}")
        if mask is not None and not mask[i]:
            continue
        out[k] = slot_info(v, i) if isinstance(v, dict) else v[i]
    return out


def _new_episode(policy: Any, seed: int | None) -> None:
    policy.reset()
    if seed is not None:
        policy.seed(seed)


def run_episode(env: gym.Env, policy: Any, seed: int) -> dict:
    """One episode in this process; returns the last info (success, t, subgoal_index, ...)."""
    _new_episode(policy, seed)
    obs, info = env.reset(seed=seed)
    tr = {"nonfinite": 0}
    while True:
        obs, _, term, trunc, info = env.step(_act(policy, obs, info, tr))
        if term or trunc:
            return {**info, "nonfinite_actions": tr["nonfinite"]}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (np.generic,)):
        return x.item()
    return x


def run_episodes(
    env_cfg: dict,
    make_policy: Callable[[], Any],
    seeds: Iterable[int],
    workers: int = 1,
    jsonl: str | Path | None = None,
    video_dir: str | Path | None = None,
    video_camera: str | Sequence[str] | None = None,
    video_seeds: Collection[int] | None = None,
    record: bool = False,
    on_episode: Callable[[dict, dict | None], None] | None = None,
    stop: Callable[[list[dict]], bool] | None = None,
    total: int | None = None,
    asynchronous: bool | None = None,
    desc: str = "rollout",
    together: Callable[[list[Callable[[], np.ndarray]]], list[np.ndarray]] | None = None,
) -> list[dict]:
    """Run one episode per seed with a fresh policy state, `workers` envs at a time.

    `on_episode(result, trajectory)` is called as each episode ends (trajectory: obs/actions/infos
    lists when `record`); `stop(results)` ends the run early (in-flight episodes are dropped).
    `video_camera`: a camera, or several shown side by side; `video_seeds`: the seeds that get an mp4
    (default: all). Each result holds `subgoal_trace`, the simulator's [t, sub-goal index, success] at every
    step where one of them changed, so a planner's progress can be scored against it afterwards.
    `together(steps)`: runs the policies' steps of one env step (each a call returning its action) and returns
    their actions, e.g. `PlanBatcher.run`, which answers agents' planner calls in batches; default: one by one.
    Returns the results of this run and of earlier runs recorded in `jsonl`.
    """
    from embodied.datasets.video import write_video

    done = read_jsonl(jsonl, repair=True) if jsonl else []
    finished = {r["seed"] for r in done}
    todo = (s for s in seeds if s not in finished)
    results = list(done)
    if stop is not None and stop(results):
        return results
    envs = make_vector_env(env_cfg, workers, asynchronous)
    n = envs.num_envs
    policies = [make_policy() for _ in range(n)]
    cur: list[int | None] = [None] * n
    traj: list[dict] = [{} for _ in range(n)]
    bar = tqdm(total=total, desc=desc, unit="ep", initial=len(done) if total else 0, dynamic_ncols=True)
    frames_of = video_camera or (env_cfg.get("cameras") or [None])[-1]
    frames_of = [frames_of] if isinstance(frames_of, str) or frames_of is None else list(frames_of)

    def wants_video(i: int) -> bool:
        return video_dir is not None and (video_seeds is None or cur[i] in video_seeds)

    def start(mask: np.ndarray) -> tuple[Any, dict]:
        seeds_now = []
        for i in range(n):
            if mask[i]:
                cur[i] = next(todo, None)
                _new_episode(policies[i], cur[i])
            seeds_now.append(cur[i] if mask[i] and cur[i] is not None else None)
        return envs.reset(seed=seeds_now, options={"reset_mask": mask})

    obs, info = start(np.ones(n, bool))
    infos = [slot_info(info, i) for i in range(n)]
    for i in range(n):
        traj[i] = _new_traj(slot(obs, i), infos[i], record, wants_video(i), frames_of, policies[i])
    try:
        while any(c is not None for c in cur):
            if interrupted():  # Ctrl-C that some library swallowed on its way up: stop here all the same
                raise KeyboardInterrupt
            active = [i for i in range(n) if cur[i] is not None]
            steps = [partial(_act, policies[i], slot(obs, i), infos[i], traj[i]) for i in active]
            actions = np.zeros((n, *envs.single_action_space.shape), np.float32)
            for i, a in zip(active, together(steps) if together is not None else [step() for step in steps]):
                actions[i] = a
            try:
                obs, reward, term, trunc, info = envs.step(actions)
            except Exception as e:  # noqa: BLE001 -- a worker process died (a hard simulator crash)
                msg = f"worker crashed: {type(e).__name__}: {str(e)[:300]}"
                for i in range(n):
                    if cur[i] is not None:
                        res = {"seed": int(cur[i]), "task": env_cfg.get("task"), "success": False, "steps": 0,
                               "return": 0.0, "error": msg}
                        if jsonl:
                            append_jsonl(jsonl, res)
                        results.append(res)
                        bar.update(1)
                _kill(envs)
                envs = make_vector_env(env_cfg, workers, asynchronous)  # fresh workers; the run goes on
                obs, info = start(np.ones(n, bool))
                infos = [slot_info(info, i) for i in range(n)]
                for i in range(n):
                    traj[i] = _new_traj(slot(obs, i), infos[i], record, wants_video(i), frames_of, policies[i])
                continue
            ended = np.zeros(n, bool)
            for i in range(n):
                if cur[i] is None:
                    continue
                infos[i] = slot_info(info, i)
                _extend(traj[i], slot(obs, i), actions[i], float(reward[i]), infos[i], frames_of, policies[i])
                if term[i] or trunc[i]:
                    ended[i] = True
                    res = {
                        "seed": int(cur[i]), "task": env_cfg.get("task"), "success": bool(infos[i]["success"]),
                        "steps": int(infos[i]["t"]), "return": float(traj[i]["return"]),
                        "instruction": infos[i]["instruction"], "subgoals": list(infos[i]["subgoals"]),
                        "final_subgoal_index": int(infos[i]["subgoal_index"]),
                        "subgoal_trace": traj[i]["sim"],
                    }
                    if infos[i].get("error"):  # recorded, not raised: the worker rebuilds its env
                        res["error"] = str(infos[i]["error"])
                    if traj[i]["nonfinite"]:  # the policy produced NaN/inf: clipped, counted, flagged
                        res["nonfinite_actions"] = traj[i]["nonfinite"]
                    res.update(policies[i].episode_summary())
                    if "perturbation" in infos[i]:
                        res["perturbation"] = _jsonable(infos[i]["perturbation"])
                    if video_dir is not None and traj[i]["frames"]:
                        path = Path(video_dir) / f"seed{cur[i]:05d}.mp4"
                        write_video(path, traj[i]["frames"])
                        res["video"] = str(path)
                    if on_episode is not None:
                        on_episode(res, traj[i] if record else None)
                    if jsonl:
                        append_jsonl(jsonl, res)
                    results.append(res)
                    bar.update(1)
                    bar.set_postfix(success=f"{np.mean([r['success'] for r in results]):.2f}")
            if stop is not None and stop(results):
                break
            if ended.any():
                obs, info = start(ended)
                for i in np.flatnonzero(ended):
                    infos[i] = slot_info(info, i) if cur[i] is not None else {}
                    traj[i] = _new_traj(slot(obs, i), infos[i], record, wants_video(i), frames_of, policies[i])
    finally:
        bar.close()
        envs.close()
    return results


def _kill(envs: gym.vector.VectorEnv) -> None:
    """Tear down a vector env whose worker died (its own close() would wait on the dead pipe)."""
    for p in getattr(envs, "processes", []):
        if p.is_alive():
            p.kill()
    try:
        envs.close(terminate=True)
    except Exception:  # noqa: BLE001 -- the pipes are broken; the processes are gone already
        pass
    envs.closed = True


def _act(policy: Any, obs: dict, info: dict, tr: dict) -> np.ndarray:
    """The actor's action, made finite."""
    a = np.asarray(policy.act(obs, info.get("subgoal"), info), np.float32)
    if not np.isfinite(a).all():
        tr["nonfinite"] += 1
        a = np.clip(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    return a


def _frame(obs: dict, cameras: list[str], policy: Any) -> np.ndarray:
    """The video frame (several cameras side by side, each at least 256 wide so that the text stays legible);
    the actor draws on it what it wants shown (the agent: its current sub-goal)."""
    frames = [obs["rgb"][c] for c in cameras]
    if len(frames) > 1:
        import cv2

        frames = [f if f.shape[1] >= 256 else cv2.resize(f, (256, 256 * f.shape[0] // f.shape[1]),
                                                         interpolation=cv2.INTER_NEAREST) for f in frames]
    frame = frames[0] if len(frames) == 1 else np.concatenate(frames, axis=1)
    return policy.annotate(frame)


def _sim_progress(tr: dict, info: dict) -> None:
    """Append the simulator's (sub-goal index, success) when it changed."""
    if "subgoal_index" not in info:
        return
    now = [int(info.get("t", 0)), int(info["subgoal_index"]), bool(info.get("success", False))]
    if not tr["sim"] or tr["sim"][-1][1:] != now[1:]:
        tr["sim"].append(now)


def _new_traj(obs: dict, info: dict, record: bool, video: bool, cameras: list, policy: Any = None) -> dict:
    tr = {"return": 0.0, "frames": [], "record": record, "nonfinite": 0, "sim": [],
          "video": video and cameras[0] is not None and "rgb" in obs}
    _sim_progress(tr, info)
    if record:
        tr.update(obs=[obs], actions=[], rewards=[], infos=[info])
    if tr["video"]:
        tr["frames"].append(_frame(obs, cameras, policy))
    return tr


def _extend(tr: dict, obs: dict, action: np.ndarray, reward: float, info: dict, cameras: list,
            policy: Any = None) -> None:
    tr["return"] += reward
    _sim_progress(tr, info)
    if tr["record"]:
        tr["obs"].append(obs)
        tr["actions"].append(np.asarray(action))
        tr["rewards"].append(reward)
        tr["infos"].append(info)
    if tr["video"]:
        tr["frames"].append(_frame(obs, cameras, policy))
