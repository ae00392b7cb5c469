"""`embodied train-planner` end to end on a corpus from real demos: lm -> align -> plan stages, checkpoint
contents, exact resume, and bad input."""
import json

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

SMALL = ["model.vision.image_size=64", "model.vision.num_layers=1", "model.eformer.num_layers=2",
         "model.llm.num_layers=2", "model.llm.hidden_size=64", "model.llm.intermediate_size=128",
         "model.eformer.num_queries=4", "batch_size=2", "log_every=1"]


@pytest.fixture(scope="module")
def stages(lift_demos, tmp_path_factory):
    root = tmp_path_factory.mktemp("tp")
    r = run_cli("corpus", f"demos=[{lift_demos}]", f"out={root / 'corpus'}")
    assert r.returncode == 0, r.stderr[-2000:]
    data = f"data={root / 'corpus' / 'egocot.jsonl'}"
    r = run_cli("train-planner", "stage=lm", data, f"out={root / 'lm'}", "steps=4", "tokenizer_vocab=300", *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("train-planner", "stage=align", data, f"out={root / 'align'}", "steps=2",
                f"model.llm.pretrained={root / 'lm' / 'checkpoint'}", "model.vision.freeze=false", *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    return root, data


def test_stage_outputs(stages):
    root, _ = stages
    lm = root / "lm" / "checkpoint"
    assert (lm / "tokenizer.json").exists() and (lm / "config.json").exists()
    align = root / "align" / "checkpoint"
    assert {p.name for p in align.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer",
        "vision",
        "trainer_state.pt",
    }
    state = torch.load(align / "trainer_state.pt", weights_only=True)
    assert state["step"] == 2 and "optimizer" in state
    assert list((root / "align").glob("train_planner_align/events.out.tfevents.*"))  # TensorBoard log
    saved = load_file(str(align / "model.safetensors"))
    assert not any(k.startswith("vision.backbone.") or ".self_attn.model." in k for k in saved)  # frozen parts stay out
    assert any("adaption_prompt" in k for k in saved) and any(k.startswith("eformer.") for k in saved)


def test_plan_stage_resumes_exactly(stages):
    root, data = stages
    common = [
        "stage=plan",
        data,
        f"init={root / 'align' / 'checkpoint'}",
        "steps=4",
        "save_every=100",
        "eval_samples=1",
        *SMALL,
    ]
    r = run_cli("train-planner", *common, f"out={root / 'straight'}")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("train-planner", *common, f"out={root / 'split'}", "stop_after=2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(root / "split" / "checkpoint" / "trainer_state.pt", weights_only=True)["step"] == 2
    r = run_cli("train-planner", *common, f"out={root / 'split'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout + r.stderr
    a = load_file(str(root / "straight" / "checkpoint" / "model.safetensors"))
    b = load_file(str(root / "split" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    summary = json.loads((root / "split" / "summary.json").read_text())
    assert summary["finished"] and 0.0 <= summary["train_plan_exact_match"] <= 1.0
    r = run_cli("train-planner", *common, f"out={root / 'split'}", "steps=6", "lr=0.1")  # more steps: fine; lr: not
    assert r.returncode == 2 and "lr=0.1 here, 0.0003 there" in r.stderr, r.stderr[-2000:]


def test_bad_input(stages, tmp_path):
    root, data = stages
    r = run_cli("train-planner", "stage=plan", data, f"init={tmp_path}", f"out={tmp_path / 'o'}", "steps=1")
    assert r.returncode == 2 and "not an EmbodiedGPT checkpoint" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("train-planner", "stage=plan", f"data={tmp_path / 'none.jsonl'}", f"out={tmp_path / 'o'}")
    assert r.returncode == 2 and "none.jsonl: file not found" in r.stderr
    r = run_cli("train-planner", "stage=align", data, f"out={tmp_path / 'o'}", "model.llm.pretrained=/nonexistent")
    assert r.returncode == 2 and "model.llm.pretrained=/nonexistent" in r.stderr


def test_same_script_on_two_processes_ddp_and_fsdp(stages, lift_demos, tmp_path):
    """Unchanged under `accelerate launch` with two CPU processes over gloo: DDP, and FSDP (torch FSDP2, fsdp=true).
    Both finish, resume, and give a checkpoint that loads into one process, where eval-plan answers with it; the
    FSDP run's weights are the DDP run's (to float rounding). accelerate's own FSDP on CPU is refused."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root, data = stages
    accel = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    launch = [str(accel), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "embodied.cli", "train-planner", "stage=plan",
              data, f"init={root / 'align' / 'checkpoint'}", "eval_samples=0", *SMALL]

    def train(out, *extra):
        r = subprocess.run([*launch, f"out={out}", *extra], capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads((out / "summary.json").read_text()), r.stdout + r.stderr

    ddp, _ = train(tmp_path / "ddp", "steps=4")
    assert ddp["processes"] == 2 and ddp["distributed"] == "MULTI_CPU" and not ddp["fsdp"]
    fsdp, _ = train(tmp_path / "fsdp", "steps=2", "fsdp=true")
    assert fsdp["processes"] == 2 and fsdp["fsdp"]
    fsdp, log = train(tmp_path / "fsdp", "steps=4", "fsdp=true")  # resumed: the optimizer state re-sharded
    assert "resuming" in log and fsdp["steps"] == 4
    state = torch.load(tmp_path / "fsdp" / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4 and state["fsdp"]
    a = load_file(str(tmp_path / "ddp" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "fsdp" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3
    r = run_cli("simqa", f"demos=[{lift_demos}]", f"out={tmp_path / 'q'}")
    assert r.returncode == 0, r.stderr[-2000:]
    for run in ("ddp", "fsdp"):  # a checkpoint of two processes, loaded into one
        r = run_cli("eval-plan", f"dataset.path={tmp_path / 'q' / 'simqa.jsonl'}", "planner.type=egpt",
                    f"planner.path={tmp_path / run / 'checkpoint'}", "limit=3", "max_new_tokens=4",
                    f"out={tmp_path / ('qa_' + run)}")
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads((tmp_path / ("qa_" + run) / "summary.json").read_text())["evaluated"] == 3
    # accelerate's FSDP on CPU would start two processes that each train alone: refused, nothing written
    r = subprocess.run([str(accel), "launch", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                        "--dynamo_backend", "no", "--use_fsdp", "--fsdp_version", "2", *launch[11:], "steps=2",
                        f"out={tmp_path / 'accel_fsdp'}"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0 and "fsdp=true" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "accel_fsdp" / "checkpoint").exists()
    r = run_cli("train-planner", "stage=plan", data, f"init={root / 'align' / 'checkpoint'}", "fsdp=true", *SMALL,
                f"out={tmp_path / 'alone'}")
    assert r.returncode == 2 and "fsdp=true shards the model across processes" in r.stderr
