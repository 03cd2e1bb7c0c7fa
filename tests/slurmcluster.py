"""A real one-node SLURM cluster on localhost, in a private directory (Debian's slurm-wlm and munge, run as root).

The configuration follows /work/shared/docs/slurm-local.md (checked on these machines): a private munge key and
socket, a generated slurm.conf passed to every command through ``SLURM_CONF``, unused ports, no cgroup.conf, one
node declaring 2 CPUs (the machine's cores are shared), one default partition. ``start`` returns a `Cluster`, or
raises `ClusterUnavailable` with one line saying why (not root, packages missing, a daemon did not come up).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


class ClusterUnavailable(RuntimeError):
    """The local cluster cannot run here; the message is one line."""


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]  # os.environ plus SLURM_CONF: pass to every SLURM command and to `nlbench sweep`
    node: str
    gpus: int = 0  # fake GPUs the node declares (gres gpu)

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> str:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """The array tasks of a job still known to slurmctld: JobId (``A_i``), JobState, Restarts, ..."""
        out = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        tasks = []
        for line in out.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if fields.get("ArrayTaskId") and fields.get("ArrayJobId"):
                fields["Task"] = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
            tasks.append(fields)
        return tasks

    def wait_idle(self, job_id: str, timeout: float) -> None:
        """Wait until no task of the job is pending, running or completing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-j", job_id, check=False).strip():
                return
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still queued after {timeout} s:\n{self.run('squeue', check=False)}")

    def stop(self) -> None:
        """Cancel every job (their processes outlive slurmd otherwise), wait for them to end, stop the daemons."""
        try:
            jobs = self.run("squeue", "-h", "-o", "%A", check=False).split()
            if jobs:
                self.run("scancel", *sorted(set(jobs)), check=False)
                deadline = time.monotonic() + 30
                while self.run("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
                    time.sleep(0.5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for name in reversed(DAEMONS):
            pid_file = self.root / f"{name}.pid"
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return max(512, int(line.split()[1]) // 1024 // 2)
    return 1024


def start(root: Path, cpus: int = 2, gpus: int = 0) -> Cluster:
    """`gpus` > 0: the node declares that many fake GPUs, character devices made with mknod (the numbers of
    /dev/null: slurmd refuses plain files) listed in gres.conf; SLURM then hands them out with --gres or
    --gpus-per-task and sets CUDA_VISIBLE_DEVICES as on a GPU node."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("not root: the local SLURM cluster's daemons run as root")
    missing = [
        tool
        for tool in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol")
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists()
    ]
    if missing:
        raise ClusterUnavailable(f"{', '.join(missing)} missing: apt-get install slurm-wlm munge (.ci/run does)")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    node = socket.gethostname().split(".")[0]
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge_socket = root / "munge.socket"
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_", "SUBMITIT_"))]:
        if var != "SLURM_CONF":
            env.pop(var)
    spool = root / "spool"
    (root / "state").mkdir(exist_ok=True)
    spool.mkdir(exist_ok=True)
    (root / "slurm.conf").write_text(f"""\
ClusterName=nlbenchtest
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={root / "state"}
SlurmdSpoolDir={spool}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
KillWait=10
MinJobAge=300
{"GresTypes=gpu" if gpus else ""}
NodeName={node} CPUs={cpus} RealMemory={_memory_mb()} {f"Gres=gpu:{gpus}" if gpus else ""} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    if gpus:
        devices = root / "dev"
        devices.mkdir(exist_ok=True)
        for i in range(gpus):
            path = devices / f"nvidia{i}"
            path.unlink(missing_ok=True)
            try:
                os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            except OSError as err:
                raise ClusterUnavailable(f"cannot make fake GPU device files (mknod: {err.strerror})") from None
        (root / "gres.conf").write_text(f"AutoDetect=off\nName=gpu File={devices}/nvidia[0-{gpus - 1}]\n")
    cluster = Cluster(root, env, node, gpus)
    commands = [
        [
            "munged",
            f"--key-file={key}",
            f"--socket={munge_socket}",
            f"--pid-file={root / 'munged.pid'}",
            f"--log-file={root / 'munged.log'}",
            f"--seed-file={root / 'munged.seed'}",
            "--force",
        ],
        ["slurmctld", "-c"],
        ["slurmd"],
    ]
    try:
        for name, command in zip(DAEMONS, commands):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
            if done.returncode:
                raise ClusterUnavailable(f"{name} did not start: {(done.stderr or done.stdout).strip()[:200]}")
        deadline = time.monotonic() + 30
        while "idle" not in cluster.run("sinfo", "-h", "-o", "%t", check=False):
            if time.monotonic() > deadline:
                log = (root / "slurmd.log").read_text()[-300:] if (root / "slurmd.log").exists() else ""
                raise ClusterUnavailable(f"the node did not become idle within 30 s: {' '.join(log.split())}")
            time.sleep(0.3)
    except BaseException:
        cluster.stop()
        raise
    return cluster
