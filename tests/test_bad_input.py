"""Bad input and killed jobs, tried as a new user would: every case runs the console script in a subprocess and
must exit 2 with one error line naming the key, file or value (no traceback), and write nothing: its folder stays
empty and the shared inputs (demo files, checkpoints) are left exactly as they were.

`python -m pytest tests/test_bad_input.py -q` runs them; the count is recorded in docs/BENCHMARKS.md (Bad input).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import EMBODIED, run_cli

ASSETS = Path(__file__).resolve().parent.parent / "embodied" / "assets" / "tiny"
LIFT = ["env=robosuite/lift", "env.cameras=[]", "video=false"]  # the cheapest collect: no rendering
STACK = ["env=robosuite/stack", "expert=reactive", "noise=0.1", "env.cameras=[]", "video=false"]
NO_LOOP = ["planner=none", "policy.type=expert", "env.cameras=[]", "video=false"]

# (job and arguments, words the one error line must hold). {in}: the shared inputs; {out}: the case's own folder.
CASES = [
    # collect
    (["collect", "env=robosuite/stak", "out={out}/d.hdf5"], "Could not find 'env/robosuite/stak'; expected one of:"),
    (["collect", "env.task=Stak", "out={out}/d.hdf5"], "unknown robosuite task 'Stak'"),
    (["collect", "env.cameras=[wristcam]", "out={out}/d.hdf5"], "unknown camera 'wristcam'"),
    (["collect", "nope=3", "out={out}/d.hdf5"], "'nope' is not a key of this config"),
    (
        ["collect", "env=robosuite/lift", "expert=reactive", "out={out}/d.hdf5"],
        "no reactive expert for robosuite task 'Lift'",
    ),
    (["collect", "expert=magic", "out={out}/d.hdf5"], "magic"),
    (["collect", *LIFT, "n=abc", "out={out}/d.hdf5"], "n='abc': expected an integer"),
    (["collect", *LIFT, "n=1.5", "out={out}/d.hdf5"], "n=1.5: expected an integer"),
    (["collect", *LIFT, "n=0", "out={out}/d.hdf5"], "n=0: expected at least 1"),
    (["collect", *LIFT, "workers=0", "out={out}/sub/d.hdf5"], "workers=0: expected at least 1"),
    (["collect", *LIFT, "noise=high", "out={out}/d.hdf5"], "noise='high': expected a number"),
    (["collect", *LIFT, "video=maybe", "out={out}/d.hdf5"], "video='maybe': expected true or false"),
    (["collect", *LIFT, "max_attempts=many", "out={out}/d.hdf5"], "max_attempts='many': expected an integer"),
    (["collect", *LIFT, "out={out}/demos.txt"], "should end in .hdf5"),
    (
        ["collect", "env=robosuite/lift", "loop=true", "env.cameras=[]", "out={out}/d.hdf5"],
        "loop=true: the loop watches a camera",
    ),
    (["collect", *LIFT, "oracle_lag=-1", "out={out}/d.hdf5"], "oracle_lag: expected a number of checks >= 0"),
    (
        ["collect", *LIFT, "policy=tiny/policies/lift", "out={out}/d.hdf5"],
        "policy: a learned policy acts on the loop's sub-goals; it needs loop=true",
    ),
    (
        ["collect", "env=robosuite/lift", "loop=true", "policy=tiny/policies/stack_pose", "out={out}/d.hdf5"],
        "policy made for robosuite Stack; env is robosuite Lift",
    ),
    (
        ["collect", "env=robosuite/lift", "env.cameras=[agentview]", "video_camera=frontview", "out={out}/d.hdf5"],
        "video_camera: 'frontview' is not one of env.cameras",
    ),
    (["collect", "n=[1", "out={out}/d.hdf5"], "no viable alternative at input '[1'"),
    (["collect", "+n=3", "out={out}/d.hdf5"], "Could not append to config. An item is already at 'n'"),
    (
        ["collect", *LIFT, "n=1", "noise=0.2", "out={in}/made.hdf5"],
        "holds demos made with other settings (noise=0.2 here, 0.0 there)",
    ),
    (["collect", *LIFT, "n=2", "out={in}/made.hdf5"], "holds 1 demos made with these settings, not n=2"),
    (["collect", *LIFT, "n=1", "out={in}/foreign.hdf5"], "exists and was not made by collect"),
    (["colect"], "unknown job 'colect'"),
    # rollout
    (["rollout", *NO_LOOP, "n=two", "out={out}/r"], "n='two': expected an integer"),
    (["rollout", *NO_LOOP, "workers=0", "out={out}/r"], "workers=0: expected at least 1"),
    (["rollout", *NO_LOOP, "seed=null", "out={out}/r"], "seed=null: expected an integer"),
    (["rollout", "env.height=32", "env.widht=32", "out={out}/r"], "'env.widht' is not a key"),
    (["rollout", "agent.check_every=often", "out={out}/r"], "agent.check_every='often': expected an integer"),
    (["rollout", *NO_LOOP, "policy.type=magic", "out={out}/r"], "policy.type: unknown 'magic'"),
    (["rollout", *NO_LOOP, "policy.type=learned", "out={out}/r"], "needs policy.path"),
    (["rollout", *NO_LOOP, "policy.type=learned", "policy.path={in}/nowhere", "out={out}/r"], "nowhere"),
    (
        ["rollout", *NO_LOOP, "policy.type=learned", "policy.path={in}/truncated_policy", "out={out}/r"],
        "truncated_policy/model.safetensors: not a readable safetensors file",
    ),
    (
        ["rollout", *NO_LOOP, "policy.type=learned", "policy.path={in}/typo_policy", "out={out}/r"],
        "typo_policy/config.json: hidden='big': expected an integer",
    ),
    (
        ["rollout", *NO_LOOP, "policy.type=learned", "policy.path={in}/garbled_policy", "out={out}/r"],
        "garbled_policy/config.json: unreadable",
    ),
    # a policy made for another task, camera set or frame size than the env gives: both named
    (
        [
            "rollout",
            "planner=none",
            "video=false",
            "env=robosuite/stack",
            "policy.type=learned",
            "policy.path=tiny/policies/lift",
            "out={out}/r",
        ],
        "policy made for robosuite Lift; env is robosuite Stack",
    ),
    (
        [
            "rollout",
            "planner=none",
            "video=false",
            "env=robosuite/lift",
            "env.cameras=[agentview]",
            "policy.type=learned",
            "policy.path=tiny/policies/lift",
            "out={out}/r",
        ],
        "policy reads camera ['robot0_eye_in_hand']; env.cameras is ['agentview']",
    ),
    (
        [
            "rollout",
            "planner=none",
            "video=false",
            "env=robosuite/lift",
            "env.height=96",
            "env.width=96",
            "policy.type=learned",
            "policy.path=tiny/policies/lift",
            "out={out}/r",
        ],
        "policy trained on 128x128 frames; env.height x env.width is 96x96",
    ),
    (
        ["rollout", "planner.path={in}/truncated_planner", "n=1", "out={out}/r"],
        "truncated_planner/model.safetensors: not a readable safetensors file",
    ),
    (
        ["rollout", "planner.path={in}/typo_planner", "n=1", "out={out}/r"],
        "typo_planner/config.json: vision.hidden_size='x': expected an integer",
    ),
    (["rollout", "planner=gpt", "out={out}/r"], "Could not find 'planner/gpt'"),
    (
        ["rollout", *NO_LOOP, "env.perturbation={kind: explode, at_step: 3}", "out={out}/r"],
        "env.perturbation.kind: unknown 'explode'",
    ),
    (["rollout", "video_camera=frontview", "out={out}/r"], "video_camera: 'frontview' is not one of env.cameras"),
    # eval-plan
    (["eval-plan", "out={out}/e"], "dataset.path is not set"),
    (["eval-plan", "dataset.path={in}/nowhere.jsonl", "out={out}/e"], "nowhere.jsonl"),
    (["eval-plan", "dataset=jsonl", "dataset.path={in}/garbage.jsonl", "out={out}/e"], "garbage.jsonl"),
    (["eval-plan", "dataset.path={in}/garbage.jsonl", "limit=abc", "out={out}/e"], "limit='abc': expected an integer"),
    (["eval-plan", "planner=gpt", "dataset.path={in}/garbage.jsonl", "out={out}/e"], "Could not find 'planner/gpt'"),
    # train-policy
    (["train-policy", "out={out}/t"], "demos is not set"),
    (["train-policy", "demos={in}/nowhere.hdf5", "out={out}/t"], "nowhere.hdf5"),
    (["train-policy", "demos={in}/garbage.hdf5", "policy.type=state", "out={out}/t"], "garbage.hdf5"),
    (
        ["train-policy", "demos={in}/made.hdf5", "n_demos=9", "policy.type=state", "out={out}/t"],
        "n_demos=9: {in}/made.hdf5 holds only 1 demos",
    ),
    (["train-policy", "demos={in}/made.hdf5", "policy.type=magic", "out={out}/t"], "policy.type='magic'"),
    (["train-policy", "demos={in}/made.hdf5", "epochs=ten", "out={out}/t"], "epochs='ten': expected an integer"),
    (
        ["train-policy", "demos={in}/made.hdf5", "policy.hidden=big", "out={out}/t"],
        "policy.hidden='big': expected an integer",
    ),
    # rerender
    (["rerender", "out={out}/r.hdf5"], "demos is not set"),
    (["rerender", "demos={in}/made.hdf5", "out={in}/made.hdf5"], "is the input file"),
    (["rerender", "demos={in}/made.hdf5", "copies=-1", "out={out}/r.hdf5"], "copies: expected 0 or more"),
    (["rerender", "demos={in}/made.hdf5", "size=8", "out={out}/r.hdf5"], "size: expected a frame side of 16"),
    (["rerender", "demos={in}/made.hdf5", "n_demos=9", "out={out}/r.hdf5"], "n_demos=9: {in}/made.hdf5 holds 1 demos"),
    (["rerender", "demos={in}/made.hdf5", "out={in}/foreign.hdf5"], "rerender does not overwrite demos"),
    (["rerender", "demos={in}/garbage.hdf5", "out={out}/r.hdf5"], "garbage.hdf5"),
    # corpus
    (["corpus", "out={out}/c"], "demos is not set"),
    (["corpus", "demos={in}/nowhere.hdf5", "out={out}/c"], "nowhere.hdf5"),
    (["corpus", "demos={in}/garbage.hdf5", "out={out}/c"], "garbage.hdf5"),
    (["corpus", "demos={in}/made.hdf5", "frames=eight", "out={out}/c"], "frames='eight': expected an integer"),
    # simqa
    (["simqa", "out={out}/s"], "demos is not set"),
    (["simqa", "demos={in}/garbage.hdf5", "out={out}/s"], "garbage.hdf5"),
    # model-info
    (["model-info", "model=egpt_13b"], "Could not find 'model/egpt_13b'"),
    (["model-info", "model.llm.hidden_size=big"], "model.llm.hidden_size='big': expected an integer"),
    # train-pose
    (["train-pose", "out={out}/p"], "demos is not set"),
    (["train-pose", "demos={in}/made.hdf5", "cameras=[]", "out={out}/p"], "cameras is empty"),
    (["train-pose", "demos={in}/garbage.hdf5", "out={out}/p"], "garbage.hdf5"),
    (["train-pose", "demos={in}/made.hdf5", "cameras=[wristcam]", "out={out}/p"], "unknown camera 'wristcam'"),
    (["train-pose", "demos={in}/made.hdf5", "time_limit=soon", "out={out}/p"], "time_limit='soon': expected a number"),
    # eval-loop
    (["eval-loop", "planners=[gpt]", "out={out}/l"], "gpt"),
    (["eval-loop", "conditions=[explode]", "out={out}/l"], "explode"),
    # shards and launchers (embodied/launch.py)
    (["rollout", *NO_LOOP, "shards=0", "out={out}/s"], "shards=0: expected a number of shards >= 1"),
    (["eval-loop", "planners=[oracle]", "shards=-2", "out={out}/s"], "shards=-2: expected a number of shards >= 1"),
    (["rollout", *NO_LOOP, "launcher=slurm", "shards=2", "out={out}/s"], "launcher=slurm: no SLURM here"),
    (["rollout", *NO_LOOP, "launcher=kubernetes", "out={out}/s"], "Could not find 'launcher/kubernetes'"),
]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """What the cases read: a finished collect run, foreign and garbage files, shipped checkpoints broken in the
    ways a disk or a hand edit breaks them."""
    d = tmp_path_factory.mktemp("inputs")
    r = run_cli("collect", *LIFT, "n=1", f"out={d / 'made.hdf5'}")
    assert r.returncode == 0, r.stderr[-2000:]
    with h5py.File(d / "foreign.hdf5", "w") as f:
        f["x"] = np.zeros(3)
    (d / "garbage.hdf5").write_text("not an HDF5 file\n")
    (d / "garbage.jsonl").write_text('{"broken": \n{"also": "broken"\n')
    for name, part, edit in (("truncated_policy", "policies/stack", "truncate"),
                             ("typo_policy", "policies/stack", ('"hidden": 256', '"hidden": "big"')),
                             ("garbled_policy", "policies/stack", ("{", "{{", 1)),
                             ("truncated_planner", "planner", "truncate"),
                             ("typo_planner", "planner", ('"hidden_size": 192', '"hidden_size": "x"', 1))):
        shutil.copytree(ASSETS / part, d / name)
        if edit == "truncate":
            w = d / name / "model.safetensors"
            w.write_bytes(w.read_bytes()[: w.stat().st_size // 3])
        else:
            c = d / name / "config.json"
            text = c.read_text()
            assert edit[0] in text, (name, text[:300])
            c.write_text(text.replace(*edit))
    return d


@pytest.fixture(scope="module")
def outcomes(inputs, tmp_path_factory) -> list[tuple]:
    """Every case run once, two at a time (each is mostly the interpreter starting: 1-5 s)."""
    before = _snapshot(inputs)

    def one(case):
        args, needle = case
        out = tmp_path_factory.mktemp("case")
        argv = [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in args]
        r = subprocess.run([*EMBODIED, *argv], capture_output=True, text=True, cwd=out, timeout=300,
                           env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
        return r, out, needle.replace("{in}", str(inputs))

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, CASES))
    return results + [_snapshot(inputs) == before]


@pytest.mark.parametrize("i", range(len(CASES)), ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(outcomes, i):
    r, out, needle = outcomes[i]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("embodied ")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(lines) == 1 and needle in lines[0], r.stderr[-1500:]
    assert list(out.iterdir()) == [], f"left behind: {sorted(p.name for p in out.rglob('*'))}"


def test_the_inputs_are_left_as_they_were(outcomes):
    assert outcomes[-1], "a refused run changed or added a file among the inputs (made.hdf5, the checkpoints)"


def _demos(path: Path) -> dict:
    with h5py.File(path) as f:
        return {f"{name}/{k}": np.asarray(g[k]) for name, g in f["data"].items() for k in ("actions", "states")} | {
            f"{name}/seed": int(g.attrs["seed"]) for name, g in f["data"].items()} | {
            "masks": {k: list(v[()]) for k, v in f["mask"].items()}}


def test_collect_killed_then_rerun_gives_the_uninterrupted_file(tmp_path):
    """SIGKILL once two episodes are finished, with a stale temp of an earlier kill lying beside `out`: the rerun
    keeps those two, runs the rest, removes the stale temp, and gives the demos an uninterrupted run gives."""
    args = [*STACK, "n=4", "workers=2"]
    straight = run_cli("collect", *args, f"out={tmp_path / 'straight.hdf5'}")
    assert straight.returncode == 0, straight.stderr[-2000:]

    out = tmp_path / "d.hdf5"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".d.tmp{dead.pid}.hdf5"  # a dead writer's temp file
    stale.write_bytes(b"half")
    proc = subprocess.Popen([*EMBODIED, "collect", *args, f"out={out}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    parts = tmp_path / ".d.partial"
    deadline = time.time() + 300
    log = parts / "episodes.jsonl"
    while (not log.exists() or len(log.read_text().splitlines()) < 2) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the workers too
    proc.wait()
    assert not out.exists() and len(log.read_text().splitlines()) >= 2

    r = run_cli("collect", *args, f"out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _demos(out), _demos(tmp_path / "straight.hdf5")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k], k
    assert not parts.exists() and not stale.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["resumed_attempts"] >= 2  # the finished episodes were kept, not run again


def _sigint_as_a_terminal_gives_it() -> None:
    """A suite started in the background (`cmd &`) hands its children SIGINT ignored, and a CI harness may hand
    it blocked (the mask survives exec): either way Python never raises KeyboardInterrupt and the run ends 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_collect_interrupted_keeps_finished_demos(tmp_path):
    """Ctrl-C (SIGINT) keeps the finished demos for the rerun, says so, and exits 130."""
    out = tmp_path / "d.hdf5"
    args = [*STACK, "n=12"]  # long enough to outlast the signal on a fast machine
    proc = subprocess.Popen([*EMBODIED, "collect", *args, f"out={out}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_a_terminal_gives_it)
    parts = tmp_path / ".d.partial"
    deadline = time.time() + 300
    while not list(parts.glob("seed*.hdf5")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "run the same command to continue" in err and "Traceback" not in err
    finished = sorted(p.name for p in parts.glob("seed*.hdf5"))
    assert finished
    r = run_cli("collect", *args, f"out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    with h5py.File(out) as f:
        seeds = [int(f[f"data/demo_{i}"].attrs["seed"]) for i in range(12)]
    assert seeds == sorted(seeds) and {f"seed{s}.hdf5" for s in seeds} >= set(finished)


def test_the_readme_displace_example_runs(tmp_path):
    """The perturbation written out whole on the command line, as the README shows it, replaces the default one."""
    r = run_cli("rollout", "env.perturbation={kind: displace, at_step: 10, offset: [0.1, 0, 0]}", *NO_LOOP,
                "policy.expert=waypoint", "n=1", f"out={tmp_path / 'r'}")
    assert r.returncode == 0, r.stderr[-2000:]
    (episode,) = [json.loads(x) for x in (tmp_path / "r" / "episodes.jsonl").read_text().splitlines()]
    assert episode["perturbation"]["kind"] == "displace" and "at_subgoal" not in str(episode["perturbation"])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
