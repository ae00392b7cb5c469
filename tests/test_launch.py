"""Shards and launchers (embodied/launch.py): the same episodes whichever way a job is split and wherever its
shards run; a shard killed midway and rerun loses and duplicates nothing. Real rollouts (robosuite Lift, the
scripted expert, no camera: fast), real subprocesses for launcher=local (submitit)."""
import json
import os
import signal
import subprocess
import time

import pytest
from conftest import EMBODIED, run_cli

FAST = ["rollout", "env=robosuite/lift", "planner=none", "policy.type=expert", "env.cameras=[]", "video=false",
        "env.horizon=60", "seed=0"]


def episodes(out) -> dict:
    recs = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(recs) == len({r["seed"] for r in recs}), "an episode recorded twice"
    return {r["seed"]: (r["success"], r["steps"], round(r["return"], 6), r["subgoal_trace"]) for r in recs}


@pytest.fixture(scope="module")
def inline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inline")
    r = run_cli(*FAST, "n=40", "workers=2", f"out={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    return episodes(out)


def test_local_shards_give_the_inline_results(inline_run, tmp_path):
    pytest.importorskip("submitit")
    r = run_cli(*FAST, "n=40", "launcher=local", "shards=4", f"out={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert episodes(tmp_path) == inline_run
    assert not list(tmp_path.glob("episodes.shard*"))  # merged, then removed
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["episodes"] == 40 and s["successes"] == sum(v[0] for v in inline_run.values())
    assert len(list((tmp_path / ".submitit").glob("*_log.out"))) == 4  # four processes ran


def test_a_shard_killed_midway_resumes_without_loss_or_duplicates(inline_run, tmp_path):
    args = [*EMBODIED, *FAST, "n=40", "shards=4", f"out={tmp_path}"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    second = tmp_path / "episodes.shard1of4.jsonl"  # inline: shard 0 has finished when shard 1 writes
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if second.exists() and len(second.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert p.poll() is None, "the run ended before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "summary.json").exists()
    kept = len((tmp_path / "episodes.shard0of4.jsonl").read_text().splitlines()) + len(second.read_text().splitlines())
    assert kept >= 12
    r = run_cli("report", f"out={tmp_path}")  # a partial run's summary, its shard files left in place
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "summary.json").read_text())["episodes"] == kept
    assert second.exists() and "| Lift | expert |" in (tmp_path / "results.md").read_text()
    r = run_cli(*FAST, "n=40", "shards=4", f"out={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert episodes(tmp_path) == inline_run


def test_shards_of_another_run_are_refused(tmp_path):
    r = run_cli(*FAST, "n=4", "shards=2", f"out={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    (tmp_path / "episodes.shard0of2.jsonl").write_text((tmp_path / "episodes.jsonl").read_text())
    r = run_cli(*FAST, "n=4", "shards=2", "env.horizon=50", f"out={tmp_path}")
    assert r.returncode == 2 and "holds a run made with other settings (env.horizon=50" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli(*FAST, "n=6", "shards=3", f"out={tmp_path}")  # more episodes, other shards: a continuation
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(episodes(tmp_path)) == list(range(6))


def test_eval_loop_shards_give_the_inline_results(tmp_path):
    common = ["eval-loop", "env=robosuite/lift", "planners=[oracle]", "conditions=[none,drop]", "n=4",
              "env.horizon=40", "video_episodes=0", "plots=false"]
    r = run_cli(*common, f"out={tmp_path / 'a'}")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli(*common, "shards=3", f"out={tmp_path / 'b'}")
    assert r.returncode == 0, r.stderr[-2000:]
    for cond in ("none", "drop"):
        assert episodes(tmp_path / "b" / cond / "oracle") == episodes(tmp_path / "a" / cond / "oracle")
    a, b = (json.loads((tmp_path / x / "summary.json").read_text()) for x in "ab")
    assert [c["done"] for c in a["cells"]] == [c["done"] for c in b["cells"]]
    (tmp_path / "b" / "summary.json").unlink()
    r = run_cli("report", f"out={tmp_path / 'b'}")  # the tables rebuilt from the folder alone
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["cells"] == b["cells"]
    r = run_cli("report", f"out={tmp_path / 'nowhere'}")
    assert r.returncode == 2 and "no config.yaml" in r.stderr


@pytest.mark.slow
def test_ray_shards_give_the_inline_results(inline_run, tmp_path):
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local cluster
    r = subprocess.run([*EMBODIED, *FAST, "n=40", "launcher=ray", "shards=4", f"out={tmp_path}"],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert episodes(tmp_path) == inline_run


def test_launcher_ray_without_a_cluster_is_one_error_line(tmp_path):
    """With ray installed: no cluster at RAY_ADDRESS; without it: what to install. Either way exit 2,
    nothing written."""
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:9"}  # nothing listens on the discard port
    r = subprocess.run([*EMBODIED, *FAST, "n=2", "launcher=ray", f"out={tmp_path / 'o'}"], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    try:
        import ray  # noqa: F401
        assert "launcher=ray: no Ray cluster at RAY_ADDRESS=127.0.0.1:9" in r.stderr
    except ImportError:
        assert "launcher=ray needs ray: pip install -e .[cluster]" in r.stderr
    assert not (tmp_path / "o").exists()
