"""The four stage folders install under the one `embodied` namespace, editable or not."""
import subprocess
import sys

from conftest import ROOT


def _import_from(cwd, env=None):
    code = ("import embodied.envs, embodied.datasets, embodied.policies, embodied.planners, embodied.cli; "
            "import embodied.policies.egpt, embodied.policies.cnn_bc, embodied.modeling, embodied.agent; "
            "import embodied.runconfig as c; print(embodied.envs.__file__); print(c.config_dir())")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)


def test_editable_install_imports_outside_repo(tmp_path):
    r = _import_from(tmp_path)
    envs_file, configs = r.stdout.split()
    assert envs_file == str(ROOT / "envs" / "__init__.py")
    assert (__import__("pathlib").Path(configs) / "collect.yaml").exists()


def test_wheel_install_imports_outside_repo(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True)
    assert not (target / "envs").exists() and not (target / "datasets").exists()  # no bare top-level names
    import os

    env = dict(os.environ, PYTHONPATH=str(target))
    r = _import_from(tmp_path, env)
    envs_file, configs = r.stdout.split()
    assert (
        envs_file.startswith(str(target))
        and (target / "embodied" / "configs" / "env" / "robosuite" / "stack.yaml").exists()
    )
    assert configs.startswith(str(target))
