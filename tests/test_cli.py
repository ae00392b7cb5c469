from conftest import run_cli


def test_failed_collect_leaves_no_file(tmp_path):
    out = tmp_path / "d.hdf5"
    # Three steps cannot finish a Lift: every attempt fails, and nothing half-written remains.
    r = run_cli(
        "collect", "env=robosuite/lift", "env.cameras=[]", "env.horizon=3", "n=2", "max_attempts=2", f"out={out}"
    )
    assert r.returncode == 2 and "only 0 of 2 demos succeeded" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_collect_writes_demos_in_seed_order_whatever_the_workers(tmp_path):
    """Two workers finish episodes out of order (seed 1's Stack demo is shorter than seed 0's); the file is the
    same as one worker's, so the policies trained on it are too."""
    import h5py
    import numpy as np

    files = {}
    for w in (1, 2):
        files[w] = tmp_path / f"w{w}.hdf5"
        r = run_cli("collect", "env=robosuite/stack", "expert=reactive", "noise=0.1", "env.cameras=[]", "video=false",
                    "n=4", f"workers={w}", f"out={files[w]}")
        assert r.returncode == 0, r.stderr[-2000:]
    with h5py.File(files[1]) as a, h5py.File(files[2]) as b:
        for i in range(4):
            ga, gb = a[f"data/demo_{i}"], b[f"data/demo_{i}"]
            assert ga.attrs["seed"] == gb.attrs["seed"] == i
            assert np.array_equal(ga["actions"][()], gb["actions"][()])


def test_help_lists_jobs():
    r = run_cli("--help")
    assert r.returncode == 0 and "collect" in r.stdout and "rollout" in r.stdout


def test_config_changes_spot_what_a_rerun_would_mix(tmp_path, monkeypatch):
    """A rerun into a folder continues the run there: config_changes names every setting that differs, and
    only those (not the keys the job may change, not keys the code added since, not another spelling)."""
    from embodied.runconfig import compose, config_changes, save_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p").mkdir()
    run = ["planner=oracle", "n=2", "out=r", "policy.path=p"]
    save_config(compose("rollout", run), tmp_path / "r")

    def changes(*extra, resumable=("n", "out")):
        return config_changes(compose("rollout", run + list(extra)), tmp_path / "r", resumable)

    assert changes("n=5") == []
    assert changes(f"policy.path={tmp_path / 'p'}") == [] and changes("policy.path=[p]") == []  # other spellings
    assert changes("env.horizon=20") == ["env.horizon=20 here, 300 there"]
    assert changes("env.perturbation=null") == ["env.perturbation=None here, {'kind': 'drop', 'at_subgoal': 'lift', "
                                                "'delay': 3} there"]
    assert changes("+env.robosuite_kwargs.ignore_done=true") == [
        "env.robosuite_kwargs={'ignore_done': True} here, {} there"]  # an option switched on
    old = (tmp_path / "r" / "config.yaml").read_text()
    (tmp_path / "r" / "config.yaml").write_text(old.replace("  background_checks: true\n", ""))
    assert changes() == []  # a key the code added since the run was made


def test_atomic_dir_puts_back_a_copy_left_aside_by_a_killed_swap(tmp_path):
    """A process killed between moving the old directory aside and moving the new one in leaves only the
    old one, under a hidden name: the next write must start from it, not lose it."""
    from embodied.io import atomic_dir

    ckpt = tmp_path / "last"
    ckpt.mkdir()
    (ckpt / "w").write_text("epoch 7")
    ckpt.rename(tmp_path / ".last.old12345")  # the killed swap
    try:
        with atomic_dir(ckpt) as tmp:
            (tmp / "w").write_text("epoch 8")
            raise RuntimeError("killed again, before the swap")
    except RuntimeError:
        pass
    assert (ckpt / "w").read_text() == "epoch 7" and not list(tmp_path.glob(".last.*"))
    with atomic_dir(ckpt) as tmp:
        (tmp / "w").write_text("epoch 8")
    assert (ckpt / "w").read_text() == "epoch 8" and not list(tmp_path.glob(".last.*"))
