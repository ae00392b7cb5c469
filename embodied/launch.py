"""Shards and launchers: a job's episodes (rollout, eval-loop) or samples (eval-plan) split into N fixed shards,
run in this process, as processes on this machine, as a SLURM job array or as Ray tasks.

Every unit of work has a fixed key: its seed within its cell (a planner and condition, a policy), or its sample
id. `shards=N` gives the i-th key of each cell's list to shard i mod N. A shard appends each finished unit to its
own file beside the cell's (`episodes.shard<k>of<N>.jsonl`) and skips keys already there or in the cell's merged
file, so a rerun, or a preempted shard resubmitted, goes on where it stopped. When every shard has run, the
parent folds their files into the cell's own (`merge`: a key already there is dropped), and the job then builds
its summary as an unsharded run does. The settings are checked once, by the parent, against the run folder's
config.yaml before any shard starts (cli.check_continuation), so every shard file in a folder is of its settings.

The engines are submitit (local processes, SLURM) and Ray, both optional (`pip install -e .[cluster]`) and
imported only when chosen. Hydra's own launcher plugins act only under `@hydra.main` multirun, which this CLI
(Hydra's compose API) does not use, so the CLI submits the shards itself.
"""
from __future__ import annotations

import importlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

from omegaconf import DictConfig, OmegaConf

from embodied.errors import EmbodiedError
from embodied.io import append_jsonl, read_jsonl

LAUNCHERS = ("inline", "local", "slurm", "ray")


@dataclass(frozen=True)
class Shard:
    k: int
    n: int

    def path(self, merged: Path) -> Path:
        """This shard's file beside a cell's merged file."""
        return merged.with_name(f"{merged.stem}.shard{self.k}of{self.n}{merged.suffix}")

    def take(self, keys: Sequence) -> list:
        return list(keys[self.k::self.n])


def shard_files(merged: Path) -> list[Path]:
    return sorted(merged.parent.glob(f"{merged.stem}.shard*of*{merged.suffix}"))


def merge(merged: Path, key: Callable[[dict], Hashable]) -> int:
    """Append to `merged` the records of its shard files whose key it does not hold yet, then remove those files;
    the number of records added. Interrupted, it is redone by the next call (the shard files go last)."""
    files = shard_files(merged)
    if not files:
        return 0
    have = {key(r) for r in read_jsonl(merged, repair=True)}
    added = 0
    for f in files:
        for r in read_jsonl(f, repair=True):
            if key(r) not in have:
                have.add(key(r))
                append_jsonl(merged, r)
                added += 1
    for f in files:
        f.unlink()
    return added


def begin(job: str, cfg: DictConfig, out: Path, merged: Sequence[Path], key: Callable[[dict], Hashable],
          resumable: tuple[str, ...], pattern: str) -> None:
    """What the parent of a rollout, eval-loop or eval-plan run does before its own pass over the cells: refuse a
    launcher that cannot run here and a folder of other settings (one holding files named `pattern`), save the
    config, and when sharded, run every shard and fold their files into the cells' `merged` files (first those an
    interrupted run left, so that no shard runs them again)."""
    from embodied.runconfig import check_continuation, save_config

    check(cfg)
    if out.exists() and any(out.rglob(pattern)):
        check_continuation(cfg, out, resumable)
    save_config(cfg, out)
    if sharded(cfg):
        for f in merged:
            merge(f, key)
        launch(job, cfg, out)
        for f in merged:
            merge(f, key)


def records(merged: Path, key: Callable[[dict], Hashable]) -> list[dict]:
    """A cell's records, merged and still in shard files (first of each key), leaving the files as they are:
    what `embodied report` reads of a run whose shards may still be running."""
    out, have = [], set()
    for f in [merged, *shard_files(merged)]:
        for r in read_jsonl(f):
            if key(r) not in have:
                have.add(key(r))
                out.append(r)
    return out


def todo(keys: Sequence, shard: Shard, merged: Path, key: Callable[[dict], Hashable]) -> list:
    """The keys shard `shard` still has to run: its share, less those in the cell's merged file."""
    done = {key(r) for r in read_jsonl(merged)}
    return [k for k in shard.take(keys) if k not in done]


def sharded(cfg: DictConfig) -> bool:
    """Whether the job hands its work to shards (more than one, or any launcher but inline)."""
    return int(cfg.get("shards", 1)) > 1 or _name(cfg) != "inline"


def _name(cfg: DictConfig) -> str:
    launcher = cfg.get("launcher")
    return str(launcher.get("name", "inline")) if launcher is not None else "inline"


def check(cfg: DictConfig) -> None:
    """Refuse a launcher that cannot run here, before anything is written: one line naming what is missing."""
    try:
        n = int(cfg.get("shards", 1))
    except (TypeError, ValueError):
        raise EmbodiedError(f"shards={cfg.get('shards')!r}: expected a number of shards >= 1") from None
    if n < 1:
        raise EmbodiedError(f"shards={n}: expected a number of shards >= 1")
    name = _name(cfg)
    if name not in LAUNCHERS:
        raise EmbodiedError(f"launcher={name}: expected one of {', '.join(LAUNCHERS)}")
    if name in ("local", "slurm", "ray"):
        module = "ray" if name == "ray" else "submitit"
        try:
            importlib.import_module(module)
        except ImportError:
            raise EmbodiedError(f"launcher={name} needs {module}: pip install -e .[cluster]") from None
    if name == "slurm" and shutil.which("sbatch") is None:
        raise EmbodiedError("launcher=slurm: no SLURM here (sbatch is not on PATH); run from a SLURM login node")
    if name == "ray":
        _ray_init(cfg)


def _ray_init(cfg: DictConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address and not _reachable(address):  # ray.init would retry for minutes before it gives up
        raise EmbodiedError(f"launcher=ray: no Ray cluster at RAY_ADDRESS={address} (nothing answers there)")
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local cluster of this machine's cores
            ray.init(log_to_driver=False)
    except Exception as e:  # noqa: BLE001 -- ray raises ConnectionError, RuntimeError or its own kinds
        where = f"at RAY_ADDRESS={address}" if address else "to start locally"
        raise EmbodiedError(f"launcher=ray: no Ray cluster {where} ({type(e).__name__}: {str(e)[:200]})") from None


def _reachable(address: str, timeout: float = 5.0) -> bool:
    """Whether something accepts a TCP connection at a Ray address (host:port or ray://host:port; "auto" and
    other forms are left to ray itself)."""
    import socket

    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        return True
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


class ShardTask:
    """One shard of a job, as the engines call it (picklable: the job by module name, the config as a dict)."""

    def __init__(self, job: str, cfg: dict, out: str, n: int, threads: int | None = None):
        self.job, self.cfg, self.out, self.n, self.threads = job, cfg, out, n, threads

    def __call__(self, k: int) -> int:
        if os.environ.get("CUDA_VISIBLE_DEVICES") == "":  # submitit's "no GPU": robosuite's EGL cannot parse it
            del os.environ["CUDA_VISIBLE_DEVICES"]
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        module = importlib.import_module(self.job)
        module.run(OmegaConf.create(self.cfg), Path(self.out), shard=Shard(k, self.n))
        return k

    def checkpoint(self, k: int) -> Any:
        """submitit: a preempted or timed-out shard is submitted again with the same arguments; it resumes from
        its own file."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, k)


def launch(job: str, cfg: DictConfig, out: Path) -> None:
    """Run every shard of `job` (a module with `run(cfg, out, shard=...)`) through cfg.launcher and wait for all;
    one error naming the shards that failed and where their logs are."""
    n, name = int(cfg.get("shards", 1)), _name(cfg)
    lc = cfg.get("launcher") or {}
    threads = int(lc.get("cpus_per_task") or 0) or None if name == "local" else None
    task = ShardTask(job, OmegaConf.to_container(cfg, resolve=True), str(out), n, threads)
    if name == "inline":
        for k in range(n):
            task(k)
        return
    if name == "ray":
        return _run_ray(task, n, lc)
    import submitit

    folder = Path(lc.get("folder") or out / ".submitit")
    if name == "local":
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        ex.update_parameters(timeout_min=int(lc.get("timeout_min", 600)), name=f"embodied-{out.name}")
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        ex.update_parameters(
            name=f"embodied-{out.name}", timeout_min=int(lc.timeout_min), cpus_per_task=int(lc.cpus_per_task),
            mem_gb=float(lc.mem_gb), slurm_gpus_per_task=int(lc.gpus_per_task) or None,
            slurm_array_parallelism=int(lc.array_parallelism),
            **({"slurm_partition": str(lc.partition)} if lc.get("partition") else {}),
            **({"slurm_additional_parameters": OmegaConf.to_container(lc.extra)} if lc.get("extra") else {}))
    jobs = ex.map_array(task, list(range(n)))
    failed = []
    for k, j in enumerate(jobs):
        try:
            j.result()
        except Exception as e:  # noqa: BLE001 -- reported together below
            failed.append(f"shard {k} ({_cause(e)})")
    if failed:
        raise EmbodiedError(f"{len(failed)} of {n} shards failed: {'; '.join(failed[:3])}; logs in {folder}; "
                            "rerun the same command to resume them")


def _cause(e: BaseException) -> str:
    """The error a shard died of: the last 'SomethingError: ...' line of the traceback an engine hands back."""
    lines = [line.strip() for line in str(e).splitlines() if re.match(r"\s*[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (lines[-1] if lines else f"{type(e).__name__}: {str(e).strip()[:200]}")[:300]


def _run_ray(task: ShardTask, n: int, lc) -> None:
    import ray

    remote = ray.remote(num_cpus=float(lc.get("num_cpus", 1)), num_gpus=float(lc.get("num_gpus", 0)))(
        lambda k: task(k))
    refs = [remote.remote(k) for k in range(n)]
    failed = []
    for k, ref in enumerate(refs):
        try:
            ray.get(ref)
        except Exception as e:  # noqa: BLE001 -- reported together below
            failed.append(f"shard {k} ({_cause(e)})")
    if failed:
        raise EmbodiedError(f"{len(failed)} of {n} shards failed: {'; '.join(failed[:3])}; rerun to resume them")
