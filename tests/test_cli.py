import pytest

from conftest import run_cli


@pytest.mark.parametrize("args,needle", [
    (["collect", "env=robosuite/stak"], "Could not find 'env/robosuite/stak'; expected one of:"),
    (["collect", "env.task=Stak"], "unknown robosuite task 'Stak'"),
    (["collect", "env.cameras=[wristcam]"], "unknown camera 'wristcam'"),
    (["collect", "nope=3"], "'nope' is not a key of this config"),
    (["collect", "env=robosuite/lift", "expert=reactive"], "no reactive expert for robosuite task 'Lift'"),
    (["rollout", "env.height=32", "env.widht=32"], "'env.widht' is not a key"),
    (["colect"], "unknown job 'colect'"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, needle):
    out = tmp_path / "demos.hdf5"
    r = run_cli(*args, f"out={out}" if args[0] == "collect" else f"out={tmp_path / 'r'}", cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("embodied")]
    assert len(lines) == 1 and needle in lines[0], r.stderr[-1500:]
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_failed_collect_leaves_no_file(tmp_path):
    out = tmp_path / "d.hdf5"
    # Three steps cannot finish a Lift: every attempt fails, and nothing half-written remains.
    r = run_cli("collect", "env=robosuite/lift", "env.cameras=[]", "env.horizon=3", "n=2", "max_attempts=2", f"out={out}")
    assert r.returncode == 2 and "only 0 of 2 demos succeeded" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_lists_jobs():
    r = run_cli("--help")
    assert r.returncode == 0 and "collect" in r.stdout and "rollout" in r.stdout
