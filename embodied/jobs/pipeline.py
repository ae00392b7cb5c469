"""`embodied pipeline out=DIR`: the whole tiny recipe on CPU, one command.

collect demos (default task set) -> planning corpus -> tokenizer + LLM pretraining -> planner stage 1
(align, trains the tiny ViT) -> stage 2 (plan) -> its success-detection head (train-done, on recoloured loop demos)
and success detector (train-detector, on frames rendered from camera-less demos) -> a policy per task ->
held-out planning QA and closed-loop evaluation. Every step is one of the project's jobs writing under out/; a
step whose result exists is skipped, so an interrupted pipeline resumes where it stopped. Seeds are fixed, so the same
config gives the same checkpoints.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embodied.errors import EmbodiedError


def _job(name: str, overrides: list[str]) -> dict | Path:
    import importlib

    from embodied.jobs import JOBS
    from embodied.runconfig import compose

    cfg = compose(name.replace("-", "_"), overrides)
    return importlib.import_module(JOBS[name]).run(cfg, default_dir=Path("outputs") / name)


class _Steps(list):
    """This invocation's steps. Each finished step's wall time also goes to out/steps.jsonl as it ends, so a
    pipeline resumed in another session still knows what its skipped steps took: the recipe's time is the sum."""

    def __init__(self, out: Path):
        from embodied.io import read_jsonl

        super().__init__()
        self.path = out / "steps.jsonl"
        self.times = {r["step"]: r["seconds"] for r in read_jsonl(self.path)} if self.path.exists() else {}


def _step(log: _Steps, title: str, done: bool, fn) -> None:
    from embodied.io import append_jsonl

    t0 = time.perf_counter()
    if done:
        print(f"[pipeline] {title}: done before, skipped", flush=True)
        log.append({"step": title, "skipped": True, "seconds": log.times.get(title)})
        return
    print(f"[pipeline] {title} ...", flush=True)
    fn()
    row = {"step": title, "seconds": round(time.perf_counter() - t0, 1), "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}
    append_jsonl(log.path, row)
    log.times[title] = row["seconds"]
    log.append(row)


def _state_policy_steps(cfg: DictConfig, env: str, demos: Path, run_dir: Path) -> tuple[list, list]:
    """A low-dim policy's own demos, without cameras (cheap, so many), and its train-policy overrides."""
    s = cfg.state_policy
    collect = [f"env={env}", f"n={s.n_demos}", f"out={demos}", f"seed={cfg.seed}", "video=false",
               f"noise={cfg.demo_noise}", f"expert={s.expert}", "env.cameras=[]", f"workers={s.workers}"]
    train = [
        f"demos={demos}",
        f"n_demos={s.n_demos}",
        "policy.type=state",
        f"epochs={s.epochs}",
        f"eval_every={s.eval_every}",
        "eval_episodes=5",
        f"out={run_dir}",
        f"seed={cfg.seed}",
        f"policy.chunk={s.chunk}",
        f"policy.use_subgoal={str(s.use_subgoal).lower()}",
        f"batch_size={s.batch_size}",
        f"eval_horizon={cfg.eval_horizon}",
        "ties=later",
    ]
    return collect, train


def _listing(items) -> str:
    return "[" + ",".join(str(i) for i in (items if not isinstance(items, str) else [items])) + "]"


def _loop_demos(cfg: DictConfig, out: Path, log: _Steps) -> list[Path]:
    """Collect the closed loop's own demos (loop_demos): per task and condition, `collect loop=true` with the
    skill expert, colours cycled, the condition's perturbation (its `lag`: the oracle's, see OraclePlanner)."""
    spec = OmegaConf.to_container(cfg.get("loop_demos") or {}, resolve=True)
    library = OmegaConf.to_container(cfg.get("loop_perturbations") or {}, resolve=True)
    paths = []
    for env, conds in spec.items():
        for j, (cond, n) in enumerate(conds.items()):
            if cond != "none" and cond not in library:
                raise EmbodiedError(f"loop_demos.{env}: condition '{cond}' is neither none nor one of "
                                    f"loop_perturbations {sorted(library)}")
            path = out / "demos" / f"loop_{env.split('/')[-1]}_{cond}.hdf5"
            spec_j = dict(library.get(cond) or {})
            lag = int(spec_j.pop("lag", 0))  # the oracle's detector lag, not the env's perturbation
            pert = json.dumps(spec_j).replace('"', "") if spec_j else "null"
            _step(
                log,
                f"collect {path.name}",
                path.exists(),
                lambda env=env, n=n, j=j, path=path, pert=pert, lag=lag: _job(
                    "collect",
                    [
                        f"env={env}",
                        f"n={n}",
                        f"seed={int(cfg.loop_seed) + 1120 * j}",
                        f"out={path}",
                        "video=false",
                        "expert=skill",
                        "loop=true",
                        "env.variety=cycle",
                        f"env.perturbation={pert}",
                        f"oracle_lag={lag}",
                        f"workers={cfg.loop_workers}",
                    ],
                ),
            )
            paths.append(path)
    return paths


def _done_head(cfg: DictConfig, out: Path, loop: list[Path], planner: Path, camera: list[str], log: _Steps) -> None:
    """The planner's success-detection head (train-done), fitted on the loop demos' labelled questions, those of
    `done_head.tasks` with `done_head.copies` recoloured re-renders each: the probes read pixels, and one
    episode per colour pair is too few for them to judge a placed cube of any colour (docs/BENCHMARKS.md)."""
    spec = cfg.done_head
    recolour = {str(t).split("/")[-1] for t in (spec.get("tasks") or [])}
    files = []
    for path in loop:
        if any(path.stem.startswith(f"loop_{t}_") for t in recolour) and int(spec.copies) > 0:
            rc = path.with_name(f"done_{path.stem}.hdf5")
            cams = [f"cameras={_listing(spec.cameras)}"] if spec.get("cameras") else []  # the planner's: cheaper
            _step(log, f"rerender {rc.name}", rc.exists(), lambda path=path, rc=rc, cams=cams: _job(
                "rerender", [f"demos={path}", f"out={rc}", f"copies={spec.copies}", f"seed={cfg.seed}", *cams]))
            path = rc
        files.append(path)
    corpus = out / "done_corpus" / "egocot.jsonl"
    _step(log, "success-detection corpus", corpus.exists(), lambda: _job(
        "corpus", [f"demos={_listing(files)}", f"out={corpus.parent}", *camera]))
    _step(log, "train-done (the planner's success detector)", (planner / "done_head.json").exists(),
          lambda: _job("train-done", [f"planner.path={planner}", f"data={corpus}", f"seed={cfg.seed}"]))


def _detector(cfg: DictConfig, out: Path, planner: Path, log: _Steps) -> None:
    """The planner's success detector (train-detector): per task and condition of `detector.demos`, camera-less
    demos of the skill controller with action noise (a condition: none, or a perturbation in loop_perturbations),
    frames rendered from their states."""
    spec = cfg.detector
    library = OmegaConf.to_container(cfg.get("loop_perturbations") or {}, resolve=True)
    files = []
    for env, conds in OmegaConf.to_container(spec.demos, resolve=True).items():
        for j, (cond, n) in enumerate(conds.items()):
            pert = dict(library.get(cond) or {})
            if cond != "none" and not pert.get("kind"):
                raise EmbodiedError(f"detector.demos.{env}: condition '{cond}' is neither none nor a perturbation in "
                                    f"loop_perturbations {sorted(k for k, v in library.items() if v.get('kind'))}")
            path = out / "demos" / f"detector_{env.split('/')[-1]}_{cond}.hdf5"
            args = [f"env={env}", f"n={n}", f"seed={int(spec.seed) + 1000 * j}", f"out={path}", "video=false",
                    "next_obs=false", "expert=skill", f"noise={cfg.demo_noise}", "env.cameras=[]",
                    "env.variety=true", f"env.perturbation={json.dumps(pert).replace(chr(34), '') if pert else 'null'}",
                    f"workers={spec.workers}"]
            _step(log, f"collect {path.name}", path.exists(), lambda args=args: _job("collect", args))
            files.append(path)
    _step(log, "train-detector (the planner's success detector)", (planner / "success_detector").exists(),
          lambda: _job("train-detector", [f"demos={_listing(files)}", f"out={out / 'detector'}",
                                          f"planner.path={planner}", f"steps={spec.steps}", f"per_demo={spec.per_demo}",
                                          f"workers={spec.workers}", f"seed={cfg.seed}"]))


def run(cfg: DictConfig, default_dir: Path) -> dict:
    from embodied.io import write_json
    from embodied.runconfig import save_config

    out = Path(cfg.out) if cfg.out else default_dir
    tasks = OmegaConf.to_container(cfg.tasks, resolve=True)
    if not tasks:
        raise EmbodiedError("tasks is empty: give env configs such as [robosuite/lift, metaworld/assembly]")
    low_dim = set(cfg.get("state_policy_tasks") or [])  # those of policy_tasks whose policy reads the sim's state
    save_config(cfg, out)
    log = _Steps(out)
    demos, heldout = {}, {}
    for env in tasks:
        name = env.split("/")[-1]
        demos[env], heldout[env] = out / "demos" / f"{name}.hdf5", out / "demos" / f"{name}_heldout.hdf5"
        for path, n, seed in ((demos[env], cfg.n_demos, cfg.seed), (heldout[env], cfg.n_heldout, cfg.seed + 50000)):
            _step(log, f"collect {path.name}", path.exists(),
                  lambda env=env, path=path, n=n, seed=seed: _job("collect", [f"env={env}", f"n={n}", f"out={path}",
                                                                              f"seed={seed}", "video=false",
                                                                              f"noise={cfg.demo_noise}"]))
    loop = _loop_demos(cfg, out, log)
    corpus = out / "corpus" / "egocot.jsonl"
    camera = [] if cfg.get("planner_camera") is None else [f"camera={_listing(cfg.planner_camera)}"]
    _step(log, "planning corpus", corpus.exists(),
          lambda: _job("corpus", [f"demos={_listing([*demos.values(), *loop])}", f"out={corpus.parent}", *camera]))
    common = [f"data={corpus}", f"seed={cfg.seed}", f"model={cfg.model}"]
    if cfg.get("planner_camera") is not None and not isinstance(cfg.planner_camera, str):
        common.append(f"model.vision.views={len(cfg.planner_camera)}")
    stages = [("lm", [f"steps={cfg.steps.lm}", f"recolour={cfg.recolour}"]),
              ("align", [f"steps={cfg.steps.align}", f"model.llm.pretrained={out / 'lm' / 'checkpoint'}",
                         "model.vision.freeze=false"]),
              ("plan", [f"steps={cfg.steps.plan}", f"init={out / 'align' / 'checkpoint'}", "bundle=true",
                        f"recolour={cfg.recolour}"])]
    for stage, extra in stages:
        _step(
            log,
            f"train-planner {stage}",
            (out / stage / "summary.json").exists(),
            lambda stage=stage, extra=extra: _job(
                "train-planner", [f"stage={stage}", f"out={out / stage}", *common, *extra]
            ),
        )
    planner = out / "plan" / "checkpoint"
    if cfg.get("done_head"):
        _done_head(cfg, out, loop, planner, camera, log)
    if cfg.get("detector"):
        _detector(cfg, out, planner, log)
    for env in cfg.policy_tasks:
        name = env.split("/")[-1]
        run_dir = out / "policies" / name
        if env in low_dim:
            state_demos = out / "demos" / f"{name}_state.hdf5"
            collect, train = _state_policy_steps(cfg, env, state_demos, run_dir)
            _step(
                log,
                f"collect {state_demos.name}",
                state_demos.exists(),
                lambda collect=collect: _job("collect", collect),
            )
            _step(log, f"train-policy {name} (state)", (run_dir / "summary.json").exists(),
                  lambda train=train: _job("train-policy", train))
            continue
        _step(log, f"train-policy {name}", (run_dir / "summary.json").exists(),
              lambda env=env, run_dir=run_dir: _job("train-policy", [
                  f"demos={demos[env]}", f"n_demos={cfg.n_demos}", "policy.type=egpt", f"policy.planner={planner}",
                  f"epochs={cfg.policy_epochs}", f"eval_every={cfg.policy_eval_every}", "eval_episodes=5",
                  f"out={run_dir}", f"seed={cfg.seed}", f"policy.chunk={cfg.policy_chunk}",
                  f"eval_horizon={cfg.eval_horizon}", f"aug_views={cfg.policy_aug_views}"]))
    simqa = out / "simqa" / "simqa.jsonl"
    _step(log, "simulated planning-QA (held-out seeds)", simqa.exists(),
          lambda: _job("simqa", [f"demos={_listing(heldout.values())}", f"out={simqa.parent}",
                                 f"seed={cfg.seed}", "explain_episodes=2"]))
    results = {}
    for kind in ("egpt", "blind"):
        target = out / "eval_plan" / kind
        _step(log, f"eval-plan {kind}", (target / "summary.json").exists(),
              lambda kind=kind, target=target: _job("eval-plan", [f"dataset.path={simqa}", f"planner.type={kind}",
                                                                  f"planner.path={planner}", f"out={target}"]))
        results[f"eval_plan_{kind}"] = json.loads((target / "summary.json").read_text())["metrics"]
    for env in cfg.policy_tasks:  # the unperturbed loop (the rollout job's default drops the cube mid-task)
        name = env.split("/")[-1]
        target = out / "eval_loop" / name
        _step(log, f"closed-loop rollout {name}", (target / "summary.json").exists(),
              lambda env=env, name=name, target=target: _job("rollout", [
                  f"env={env}", "policy.type=learned", f"policy.path={out / 'policies' / name / 'best'}",
                  "planner.type=egpt", f"planner.path={planner}", f"n={cfg.eval_episodes}", f"out={target}",
                  "seed=90000", "video=false", f"env.horizon={cfg.eval_horizon}", "env.perturbation=null"]))
        results[f"loop_{name}"] = json.loads((target / "summary.json").read_text())
    for env in cfg.loop_eval.tasks:  # the planner itself, scored against the simulator (skill controller)
        name = env.split("/")[-1]
        target = out / "eval_loop_planner" / name
        _step(log, f"eval-loop {name}", (target / "summary.json").exists(),
              lambda env=env, target=target: _job("eval-loop", [
                  f"env={env}", f"planners=[egpt:{planner}]", f"conditions={_listing(cfg.loop_eval.conditions)}",
                  f"n={cfg.loop_eval.n}", f"workers={cfg.loop_workers}", "video_episodes=1", f"out={target}"]))
        results[f"eval_loop_{name}"] = json.loads((target / "summary.json").read_text())
    timed = [r["seconds"] for r in log if r.get("seconds") is not None]
    summary = {"out": str(out), "planner": str(planner), "steps": list(log), "results": results,
               "seconds_total": round(sum(timed), 1),  # every step's own time, whichever invocation ran it
               "steps_without_time": [r["step"] for r in log if r.get("seconds") is None]}
    write_json(out / "pipeline.json", summary)
    print(json.dumps({"pipeline": str(out / "pipeline.json"), "planner": str(planner),
                      "minutes_total": round(summary["seconds_total"] / 60, 1)}))
    return summary
