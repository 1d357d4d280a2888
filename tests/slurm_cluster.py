"""A throwaway single-node Slurm cluster in a temporary directory, for the Slurm tests and for trying the
README's Slurm commands on one machine.

It starts ``munged`` (its own key and socket), ``slurmctld`` and ``slurmd`` from Debian's packages
(``apt-get install slurmctld slurmd munge slurm-client``, Slurm 22.05) with a ``slurm.conf`` written
into the directory: one node named ``hostname -s`` with this machine's CPUs and most of its memory, one
partition ``debug``, ``select/cons_tres``, ``proctrack/linuxproc``, no accounting. No systemd: the
daemons run in the foreground as children of this process and are stopped by their pids. Clients find
the cluster through ``SLURM_CONF`` (see ``Cluster.env``); the munge socket is named in the
configuration (``AuthInfo=socket=...``), so nothing outside the directory is read or written.

    python tests/slurm_cluster.py [DIR]    # starts it, prints the export line, stops it on Ctrl-C
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


def unavailable() -> str | None:
    """Why the cluster cannot start here (a reason for ``pytest.skip``), or None when it can."""
    missing = [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p, path=_search_path()) is None]
    if missing:
        return (
            f"Slurm is not installed (missing {', '.join(missing)}; "
            "apt-get install -y slurmctld slurmd munge slurm-client)"
        )
    if os.geteuid() != 0:
        return "the throwaway Slurm cluster's daemons must run as root (slurmd starts jobs as their user)"
    return None


def _search_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _which(name: str) -> str:
    path = shutil.which(name, path=_search_path())
    if path is None:
        raise FileNotFoundError(f"{name} not found; apt-get install -y slurmctld slurmd munge slurm-client")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    return max(1024, kb // 1024 - 512)  # leave the daemons some room; RealMemory must not exceed the node's


def write_config(root: Path, cpus: int, memory_mb: int) -> Path:
    """Write ``root/slurm.conf`` for one node (this host) in one partition ``debug``; returns its path."""
    host = socket.gethostname().split(".")[0]  # what slurmd registers as (hostname -s)
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lines = [
        "ClusterName=detect-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        # cred_expire also holds a requeued job back before it may start again (default 120 s)
        f"AuthInfo=socket={root / 'munge.socket'},cred_expire=5",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log/slurmctld.log'}",
        f"SlurmdLogFile={root / 'log/slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=2",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "InactiveLimit=0",
        "MinJobAge=600",  # finished jobs stay visible to squeue/scontrol for 10 minutes
        "KillWait=5",  # seconds between SIGTERM and SIGKILL (time limit, requeue, scancel)
        "OverTimeLimit=0",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


@dataclass
class Cluster:
    """A running single-node cluster; ``env()`` gives the environment for its clients."""

    root: Path
    conf: Path
    node: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *cmd: str, check: bool = True) -> str:
        """Run a Slurm client command against this cluster; returns its stdout."""
        proc = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()

    def log(self, daemon: str) -> str:
        path = self.root / "log" / f"{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job still queued or running and wait until none is left on the node (job steps
        run under slurmstepd, which outlives slurmd)."""
        jobs = self.run("squeue", "--noheader", "--format=%A", check=False).split()
        if jobs:
            self.run("scancel", *jobs, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.run("squeue", "--noheader", "--format=%T", check=False).split()
            if not set(states) & {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"}:
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons by their pids (slurmd, slurmctld, munged)."""
        if all(self.procs.get(name) and self.procs[name].poll() is None for name in DAEMONS):
            self.cancel_all()
        for name in reversed(DAEMONS):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def start(root: Path, cpus: int | None = None, memory_mb: int | None = None, timeout: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd in ``root`` and wait until the node is idle."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # munged refuses a socket directory writable by others
    conf = write_config(root, cpus or os.cpu_count() or 1, memory_mb or _memory_mb())
    node = socket.gethostname().split(".")[0]
    cluster = Cluster(root=root, conf=conf, node=node)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    env = cluster.env()
    logs = root / "log"
    try:
        cluster.procs["munged"] = subprocess.Popen(
            [
                _which("munged"),
                "--foreground",
                "--force",  # as root, with the key owned by root
                f"--key-file={key}",
                f"--socket={root / 'munge.socket'}",
                f"--pid-file={root / 'munged.pid'}",
                f"--log-file={logs / 'munged.log'}",
                f"--seed-file={root / 'munged.seed'}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(logs / "munged.out", "w"),  # noqa: SIM115 - the daemon holds it
        )
        _wait_for(lambda: (root / "munge.socket").exists(), timeout, "munged's socket", cluster, "munged")
        for name, args in (("slurmctld", ["-D", "-i"]), ("slurmd", ["-D", "-N", node])):
            cluster.procs[name] = subprocess.Popen(
                [_which(name), *args, "-f", str(conf)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(logs / f"{name}.out", "w"),  # noqa: SIM115 - the daemon holds it
                start_new_session=True,
            )
        _wait_for(lambda: cluster.node_state() == "idle", timeout, "the node to be idle", cluster, "slurmd")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for(ready, timeout: float, what: str, cluster: Cluster, daemon: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                out = (cluster.root / "log" / f"{name}.out").read_text(errors="replace")
                raise RuntimeError(
                    f"{name} exited ({proc.returncode}) while waiting for {what}: {out[-2000:]}"
                    f"{cluster.log(name)[-2000:]}"
                )
        if ready():
            return
        time.sleep(0.5)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what}; {daemon} log:\n{cluster.log(daemon)[-3000:]}"
    )


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="slurm-"))
    cluster = start(root)
    print(
        f"export SLURM_CONF={cluster.conf}   # node {cluster.node} idle; Ctrl-C stops the cluster", flush=True
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the daemons on SIGTERM too
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
