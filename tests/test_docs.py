"""Every `embodied JOB key=value ...` command shown in the README and docs/MODEL.md composes: each job,
config group and key it names exists, so the documentation cannot drift from configs/."""
import re
import shlex
from pathlib import Path

import pytest

from embodied.jobs import JOBS
from embodied.runconfig import compose

ROOT = Path(__file__).resolve().parent.parent


def documented_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in ("README.md", "docs/MODEL.md"):
        text = (ROOT / doc).read_text()
        blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
        spans = re.findall(r"`((?:\.venv/bin/)?embodied [^`]+)`", text)  # inline, in the prose
        for block in blocks + spans:
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                for i, w in enumerate(words):  # `embodied JOB`, `.venv/bin/embodied JOB`, `-m embodied.cli JOB`
                    if (w.endswith("embodied") or w == "embodied.cli") and i + 1 < len(words) and words[i + 1] in JOBS:
                        found.append((doc, words[i + 1], [a for a in words[i + 2:] if a != "--cfg"]))
                        break
    return found


COMMANDS = documented_commands()


def test_the_docs_show_every_job():
    assert {job for _, job, _ in COMMANDS} == set(JOBS)


@pytest.mark.parametrize("doc,job,overrides", COMMANDS, ids=[f"{d}:{j}:{i}" for i, (d, j, _) in enumerate(COMMANDS)])
def test_documented_command_composes(doc, job, overrides):
    compose(job.replace("-", "_"), overrides)
