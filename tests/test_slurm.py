"""``examples/slurm/job-array.sh``: by hand, and (opt-in: LOCKENV_SLURM_TESTS=1, as root,
with slurm-wlm and munge installed) as a real Slurm job array on one committed lock.

For the array, a one-node cluster (munged, slurmctld, slurmd) runs the script as a
32-task array: every task runs a command in the environment the lock describes, built
on node-local scratch from one shared, initially empty cache; the index is the fixture
index on 127.0.0.1, logging every request.  Checked: every task's output, that exactly
one task built the environment (the others found it up to date), and how often each
artifact was fetched (printed: ``pytest -s`` shows it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fixtures.mirror_servers import Unavailable
from fixtures.slurm import one_node_cluster

from cli_support import lockenv, write_manifest

EXAMPLE = Path(__file__).parent.parent / "examples" / "slurm" / "job-array.sh"
TASKS = 32


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the job script is for Linux nodes"
)
def test_the_job_script_outside_slurm(tmp_path: Path, index_server: Any) -> None:
    """What each task runs, run by hand: the environment on scratch, the command in it."""
    project = tmp_path / "project"
    project.mkdir()
    write_manifest(project, index_server.url, 'clicky = "*"\n', platforms='["linux-64"]')
    lockenv(project, "lock")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "LOCKENV_SCRATCH": str(tmp_path / "scratch"),
        "SLURM_ARRAY_TASK_ID": "7",
    }
    command = ["bash", str(EXAMPLE), str(project / "lockenv.lock"), "--"]
    code = "import clicky, os, sys; print(os.environ['SLURM_ARRAY_TASK_ID'], sys.prefix)"
    ran = subprocess.run(
        [*command, "python", "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    task, prefix = ran.stdout.split()
    assert task == "7" and prefix.startswith(str(tmp_path / "scratch" / f"lockenv-{os.getuid()}"))
    assert "synced 'default'" in ran.stderr
    again = subprocess.run(
        [*command, "clicky"], env=env, capture_output=True, text=True, check=False
    )
    assert again.stdout.strip() == "clicky ok" and "is up to date" in again.stderr
    usage = subprocess.run(command[:2], env=env, capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage: sbatch" in usage.stderr


@pytest.mark.slurm
def test_job_array_syncs_once_per_node(tmp_path: Path, make_index_server: Any) -> None:
    origin = make_index_server()
    project = tmp_path / "project"
    project.mkdir()
    write_manifest(project, origin.url, 'alpha = "*"\nclicky = "*"\n', platforms='["linux-64"]')
    lockenv(project, "lock")
    origin.reset()
    outputs = tmp_path / "out"
    outputs.mkdir()
    try:
        with one_node_cluster(tmp_path / "slurm") as cluster:
            env = {
                **cluster.env,
                # The tasks find lockenv where this test runs it from.
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), cluster.env["PATH"]]),
                "LOCKENV_CACHE_DIR": str(tmp_path / "shared-cache"),
                "LOCKENV_SCRATCH": str(tmp_path / "node-scratch"),
            }
            command = (
                "import alpha, os, sys; "
                "print('task', os.environ['SLURM_ARRAY_TASK_ID'], alpha.__name__, sys.prefix)"
            )
            submitted = subprocess.run(
                [
                    "sbatch",
                    "--wait",
                    f"--array=0-{TASKS - 1}",
                    f"--output={outputs}/task-%a.out",
                    f"--chdir={tmp_path}",
                    str(EXAMPLE),
                    str(project / "lockenv.lock"),
                    "--",
                    "python",
                    "-c",
                    command,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
    except Unavailable as exc:
        pytest.skip(str(exc))
    logs = {i: (outputs / f"task-{i}.out").read_text() for i in range(TASKS)}
    assert submitted.returncode == 0, submitted.stderr + "".join(logs.values())

    prefixes = set()
    for task, log in logs.items():
        line = next(line for line in log.splitlines() if line.startswith("task "))
        _, number, module, prefix = line.split()
        assert (int(number), module) == (task, "alpha")
        prefixes.add(prefix)
    assert len(prefixes) == 1  # one environment for the node
    # One task built it; the others waited for it (or came later) and found it built.
    built = [t for t, log in logs.items() if "synced 'default'" in log]
    assert len(built) == 1, logs
    assert sum("is up to date" in log for log in logs.values()) == TASKS - 1

    fetched = Counter(path for path in origin.paths("GET") if path.startswith("/files/"))
    print(f"\nfetches per artifact over {TASKS} tasks: {dict(sorted(fetched.items()))}")
    assert fetched and set(fetched.values()) == {1}, fetched
