"""A real single-node SLURM cluster on 127.0.0.1, started in a folder and stopped by PID.

munge (its own key and socket), MariaDB (its own data folder), slurmdbd, slurmctld and slurmd
run as root from the SLURM 22.05 Debian packages (tests/cluster/install-slurm.sh installs them;
nothing here installs anything). The node has one fake GPU through GRES: SLURM schedules and
accounts `gres/gpu` for it, but there is no device behind it, so jobs run on the CPU.

    with LocalSlurm(folder) as cluster:      # start(): about 10 s
        subprocess.run(["sbatch", ...], env=cluster.env)
        cluster.sacct()                      # one dict per job allocation
    # stop(): cancels the jobs, stops every daemon by its PID (also after an exception)

Every daemon listens on 127.0.0.1 on free ports, so nothing collides with a system SLURM,
munge or MySQL. One thing is global: the SLURM executor's job-step plugin removes SLURM_CONF
before it calls `srun` inside a job, so srun reads /etc/slurm/slurm.conf; the cluster links
that path to its own slurm.conf while it runs (and refuses to start when a real one is there).

Run by hand (`python tests/cluster/localslurm.py DIR`) to get a cluster to play with until
Enter is pressed.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "sacct", "sacctmgr", "squeue", "sinfo", "scancel", "scontrol")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def which(name: str) -> str | None:
    """A binary on PATH or in the sbin folders (root's PATH may lack them)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def missing_binaries() -> list[str]:
    """The binaries the cluster needs that this machine lacks (install-slurm.sh installs them)."""
    return [b for b in DAEMONS + CLIENTS if which(b) is None]


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    missing = missing_binaries()
    if missing:
        return (
            "SLURM binaries missing (" + ", ".join(missing) + "); "
            "run `bash tests/cluster/install-slurm.sh` as root to install them"
        )
    if os.geteuid() != 0:
        return "the local SLURM cluster runs its daemons as root; run the test as root"
    if SYSTEM_CONF.exists():  # a dangling link left by an earlier test cluster is replaced
        return (
            f"{SYSTEM_CONF} exists (a real or running SLURM); the local test cluster "
            "would have to replace it, so it does not start"
        )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClusterError(RuntimeError):
    pass


class LocalSlurm:
    """A single-node SLURM cluster in `root` (a folder of its own, made if missing).

    cpus / mem_mb: what the node offers (default: what `slurmd -C` finds, memory less 10%).
    gpus: fake GPUs on the node (GRES gpu, type `gpu_type`).
    partition / account: names the cluster is made with; the partition is not the default
    one unless `default_partition`, so a job that names none is refused.
    """

    def __init__(
        self,
        root,
        *,
        gpus: int = 1,
        gpu_type: str = "fake",
        cpus: int | None = None,
        mem_mb: int | None = None,
        partition: str = "debug",
        account: str = "root",
        default_partition: bool = True,
        kill_wait: int = 5,
    ):
        self.root = Path(root).absolute()
        self.gpus, self.gpu_type = gpus, gpu_type
        self.cpus, self.mem_mb = cpus, mem_mb
        self.partition, self.account = partition, account
        self.default_partition = default_partition
        self.kill_wait = kill_wait
        self.node = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self._linked_conf = False
        self.etc = self.root / "etc"
        self.conf = self.etc / "slurm.conf"
        self.logdir = self.root / "log"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.db_socket = self.root / "mysql.sock"

    # ------------------------------------------------------------------ environment
    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM clients (sbatch, sacct, snakemake) talking to this cluster."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        sbin = "/usr/sbin:/sbin"
        if sbin not in env.get("PATH", ""):
            env["PATH"] = env.get("PATH", "") + ":" + sbin
        return env

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess:
        """Run a client command against this cluster."""
        res = subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, **kw
        )
        if check and res.returncode != 0:
            raise ClusterError(
                f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
            )
        return res

    # ------------------------------------------------------------------ start
    def __enter__(self) -> LocalSlurm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        reason = unavailable_reason()
        if reason:
            raise ClusterError(reason)
        for d in ("etc", "log", "run", "state", "spool", "munge", "mysql", "fakedev"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        self.ports = {k: free_port() for k in ("db", "dbd", "ctld", "slurmd")}
        deadline = time.monotonic() + timeout
        self._start_munge(deadline)
        self._start_mariadb(deadline)
        self._write_configs()
        self._link_system_conf()
        self._spawn("slurmdbd", [which("slurmdbd"), "-D"])
        self._wait(
            "slurmdbd answers",
            deadline,
            lambda: self.run("sacctmgr", "-n", "list", "cluster", check=False).returncode == 0,
        )
        self.run("sacctmgr", "-i", "add", "cluster", "localslurm", check=False)
        if self.account != "root":
            self.run("sacctmgr", "-i", "add", "account", self.account, "cluster=localslurm")
            self.run(
                "sacctmgr",
                "-i",
                "add",
                "user",
                "root",
                f"account={self.account}",
                "cluster=localslurm",
            )
        self._spawn("slurmctld", [which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait(
            "slurmctld answers",
            deadline,
            lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
        )
        self._spawn("slurmd", [which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(f"node {self.node} idle", deadline, self._node_idle)

    def _spawn(self, name: str, cmd: list[str], env: dict | None = None) -> None:
        log = open(self.logdir / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or self.env,
            start_new_session=True,
            cwd=self.root,
        )
        log.close()
        (self.root / "run" / f"{name}.pid.started").write_text(str(self.procs[name].pid))

    def _wait(self, what: str, deadline: float, ready, poll: float = 0.25) -> None:
        while True:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise ClusterError(
                        f"{name} exited ({p.returncode}) while waiting for {what}; "
                        f"logs in {self.logdir}:\n{self.tail_logs()}"
                    )
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out waiting for {what}; logs in {self.logdir}:\n{self.tail_logs()}"
                )
            time.sleep(poll)

    def _start_munge(self, deadline: float) -> None:
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        self._spawn(
            "munged",
            [
                which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'run' / 'munged.pid'}",
                f"--log-file={self.logdir / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait(
            "munged",
            deadline,
            lambda: (
                subprocess.run(
                    f"munge -n -S {self.munge_socket} | unmunge -S {self.munge_socket}",
                    shell=True,
                    capture_output=True,
                ).returncode
                == 0
            ),
        )

    def _start_mariadb(self, deadline: float) -> None:
        datadir = self.root / "mysql"
        if not (datadir / "mysql").exists():
            res = subprocess.run(
                [
                    which("mariadb-install-db"),
                    "--no-defaults",
                    "--user=root",
                    f"--datadir={datadir}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                capture_output=True,
                text=True,
                timeout=max(10, deadline - time.monotonic()),
            )
            if res.returncode:
                raise ClusterError(f"mariadb-install-db failed:\n{res.stdout}{res.stderr}")
        self._spawn(
            "mariadbd",
            [
                which("mariadbd"),
                "--no-defaults",
                "--user=root",
                f"--datadir={datadir}",
                f"--socket={self.db_socket}",
                "--bind-address=127.0.0.1",
                f"--port={self.ports['db']}",
                "--skip-name-resolve",
                f"--pid-file={self.root / 'run' / 'mariadbd.pid'}",
                f"--log-error={self.logdir / 'mariadbd.log'}",
                "--innodb-buffer-pool-size=64M",
                "--skip-log-bin",
            ],
        )
        sql = lambda q: subprocess.run(  # noqa: E731
            [
                which("mariadb"),
                "--no-defaults",
                f"--socket={self.db_socket}",
                "-u",
                "root",
                "-e",
                q,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        self._wait("mariadbd", deadline, lambda: sql("SELECT 1").returncode == 0)
        res = sql(
            "CREATE DATABASE IF NOT EXISTS slurm_acct_db; "
            + " ".join(
                f"CREATE USER IF NOT EXISTS 'slurm'@'{h}' IDENTIFIED BY 'slurmdbpass'; "
                f"GRANT ALL ON slurm_acct_db.* TO 'slurm'@'{h}';"
                for h in ("localhost", "127.0.0.1")
            )
            + " FLUSH PRIVILEGES;"
        )
        if res.returncode:
            raise ClusterError(f"could not set up the accounting database:\n{res.stderr}")

    def _node_hardware(self) -> tuple[str, int]:
        """(CPU layout fields of `slurmd -C`, usable memory in MB)."""
        out = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True).stdout
        fields = dict(f.split("=", 1) for f in out.split("\n")[0].split() if "=" in f)
        if self.cpus:
            layout = f"CPUs={self.cpus}"
        else:
            layout = " ".join(
                f"{k}={fields[k]}"
                for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
                if k in fields
            )
        mem = self.mem_mb or int(int(fields.get("RealMemory", "4000")) * 0.9)
        return layout, mem

    def _write_configs(self) -> None:
        dev = self.root / "fakedev"
        gres_files = []
        for i in range(self.gpus):
            path = dev / f"nvidia{i}"
            if not path.exists():
                os.mknod(
                    path, 0o666 | 0o020000, os.makedev(1, 3)
                )  # a character device (/dev/null's)
            gres_files.append(str(path))
        layout, mem = self._node_hardware()
        r = self.root
        gres = f" Gres=gpu:{self.gpu_type}:{self.gpus}" if self.gpus else ""
        slurm_conf = f"""\
# Written by tests/cluster/localslurm.py: a single-node test cluster in {r}
ClusterName=localslurm
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
SlurmctldPort={self.ports["ctld"]}
SlurmdPort={self.ports["slurmd"]}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["dbd"]}
AccountingStoragePass={self.munge_socket}
AccountingStorageTRES=gres/gpu,gres/gpu:{self.gpu_type}
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
KillWait={self.kill_wait}
DefMemPerCPU=500
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 {layout} RealMemory={mem}{gres} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default={"YES" if self.default_partition else "NO"} MaxTime=INFINITE State=UP
"""
        gres_conf = "AutoDetect=off\n" + "".join(
            f"NodeName={self.node} Name=gpu Type={self.gpu_type} File={f} Flags=nvidia_gpu_env\n"
            for f in gres_files
        )
        dbd_conf = f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports["dbd"]}
SlurmUser=root
LogFile={r}/log/slurmdbd.log
PidFile={r}/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports["db"]}
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurmdbpass
"""
        self.conf.write_text(slurm_conf)
        (self.etc / "gres.conf").write_text(gres_conf)
        dbd = self.etc / "slurmdbd.conf"
        dbd.write_text(dbd_conf)
        os.chmod(dbd, 0o600)

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
            SYSTEM_CONF.unlink()  # left by an earlier cluster whose folder is gone
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._linked_conf = True

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%t", check=False).stdout.split()
        return out == ["idle"]

    # ------------------------------------------------------------------ queries
    def sacct(self, *args: str) -> list[dict[str, str]]:
        """One dict per job allocation (sacct -X) since the cluster started, all of them."""
        fields = (
            "JobID,JobName%100,Comment%300,State,ExitCode,Account,Partition,AllocTRES%200,"
            "NodeList,Start,End,Elapsed,WorkDir%300"
        )
        out = self.run(
            "sacct",
            "-X",
            "-a",
            "-P",
            "--delimiter=\t",
            "-S",
            "2000-01-01",
            "-E",
            "now",
            "-o",
            fields,
            *args,
        ).stdout
        return list(csv.DictReader(io.StringIO(out), delimiter="\t"))

    def squeue(self) -> list[dict[str, str]]:
        out = self.run("squeue", "-h", "-o", "%i\t%j\t%T\t%k", check=False).stdout
        return [
            dict(zip(("JobID", "JobName", "State", "Comment"), line.split("\t")))
            for line in out.splitlines()
            if line.strip()
        ]

    def tail_logs(self, lines: int = 15) -> str:
        parts = []
        for f in sorted(self.logdir.glob("*")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            if text:
                parts.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ------------------------------------------------------------------ stop
    def stop(self, timeout: float = 30) -> None:
        """Cancel every job, then stop the daemons this object started, by PID, newest first."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "-u", "root", check=False, timeout=10)
                end = time.monotonic() + self.kill_wait + 10
                while self.squeue() and time.monotonic() < end:
                    time.sleep(0.5)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in reversed(list(self.procs)):
            self._stop_pid(name, self.procs[name], timeout)
        self.procs.clear()
        if (
            self._linked_conf
            and SYSTEM_CONF.is_symlink()
            and os.readlink(SYSTEM_CONF) == str(self.conf)
        ):
            SYSTEM_CONF.unlink()
        self._linked_conf = False

    @staticmethod
    def _session_members(sid: int) -> list[int]:
        """PIDs in session `sid` (the daemon's own session: its job processes)."""
        pids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != sid:
                try:
                    if os.getsid(int(d.name)) == sid:
                        pids.append(int(d.name))
                except OSError:
                    pass
        return pids

    def _stop_pid(self, name: str, proc: subprocess.Popen, timeout: float) -> None:
        children = self._session_members(proc.pid) if proc.poll() is None else []
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pid in children:  # e.g. slurmstepd of a job slurmd started
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    with LocalSlurm(argv[1]) as cluster:
        print(f"cluster up: export SLURM_CONF={cluster.conf}; press Enter to stop", flush=True)
        try:
            sys.stdin.readline()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
