"""CPU seconds and peak memory of processes, for the benchmarks in bench/.

    usage = ProcUsage.of(pid)            # read /proc/<pid>: CPU s, VmHWM, VmRSS
    watch = ServerWatch().start()        # samples PostgreSQL, RabbitMQ, Dovecot
    ...
    watch.stop(); watch.cpu_seconds()    # {"postgresql": 41.2, "rabbitmq": 9.8, ...}

The stages are measured from /proc directly (utime + stime of the process
and its threads; VmHWM, the kernel's high-water mark of the resident set).
The servers run as many processes, some short-lived (an IMAP session,
a PostgreSQL backend per connection), so a thread samples their CPU times
every half second and keeps the last value seen per pid; a process that
ends between two samples loses at most half a second of CPU.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass

import psutil

_TICKS = os.sysconf("SC_CLK_TCK")

@dataclass(frozen=True)
class ProcUsage:
    cpu_seconds: float  # user + system, all threads
    peak_rss_mb: float  # VmHWM
    rss_mb: float  # VmRSS now

    @classmethod
    def of(cls, pid: int) -> ProcUsage:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may contain spaces: fields start after its ')'.
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                status[key] = value.strip()
        return cls(cpu, _kb(status.get("VmHWM", "0 kB")) / 1024, _kb(status.get("VmRSS", "0 kB")) / 1024)


def _kb(value: str) -> float:
    return float(value.split()[0])


class ServerWatch(threading.Thread):
    """CPU seconds used by PostgreSQL, RabbitMQ and Dovecot between start() and stop().

    Other test runs may share these servers. PostgreSQL is counted for this
    run alone: the backends connected to `database` plus the cluster's own
    background processes (WAL writer, checkpointer...), found under the
    postmaster whose command line names `pgdata`. rspamd (bench/e2e.py
    --rspamd), RabbitMQ (beam.smp) and Dovecot (the master started with
    `dovecot_conf`, and its children) are counted whole: their figures
    include whatever else used them meanwhile.
    """

    def __init__(self, database: str, pgdata: str = "/var/lib/postgresql",
                 dovecot_conf: str = "/tmp/deskmail-dovecot/dovecot.conf", interval: float = 0.5) -> None:
        super().__init__(name="server-watch", daemon=True)
        self.database = database
        self.pgdata = pgdata
        self.dovecot_conf = dovecot_conf
        self.interval = interval
        # label -> pid of a client whose PostgreSQL backends are counted apart ("postgresql: parser").
        self.clients: dict[str, int] = {}
        self._baseline: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._halt = threading.Event()
        self._machine_start = psutil.cpu_times()
        self._machine_end = self._machine_start
        self.started_at = time.monotonic()
        self.stopped_at = self.started_at

    def _client_ports(self) -> dict[int, str]:
        ports: dict[int, str] = {}
        for label, pid in self.clients.items():
            try:
                for conn in psutil.Process(pid).net_connections("tcp"):
                    if conn.raddr and conn.raddr.port == 5432:
                        ports[conn.laddr.port] = label
            except psutil.Error:
                continue
        return ports

    def _backend_label(self, title: str, ports: dict[int, str]) -> str:
        match = re.search(r"\((\d+)\)", title)
        if match and int(match.group(1)) in ports:
            return f"postgresql: {ports[int(match.group(1))]}"
        return "postgresql"

    def _members(self) -> dict[int, str]:
        """pid -> server, for the processes that count."""
        members: dict[int, str] = {}
        ports = self._client_ports()
        for proc in psutil.process_iter(["name", "cmdline"]):
            name, cmdline = proc.info["name"] or "", " ".join(proc.info["cmdline"] or ())
            try:
                if name == "postgres" and f"-D {self.pgdata}" in cmdline:
                    members[proc.pid] = "postgresql"
                    for child in proc.children():
                        title = " ".join(child.cmdline())
                        backend = "(" in title or "[local]" in title
                        if not backend:
                            members[child.pid] = "postgresql"
                        elif f" {self.database} " in title:
                            members[child.pid] = self._backend_label(title, ports)
                elif name == "beam.smp":
                    members[proc.pid] = "rabbitmq (shared)"
                elif name == "rspamd" or cmdline.startswith("rspamd: "):  # it renames its processes
                    members[proc.pid] = "rspamd (shared)"
                elif name == "dovecot" and self.dovecot_conf in cmdline:
                    members[proc.pid] = "dovecot (shared)"
                    for child in proc.children(recursive=True):
                        members[child.pid] = "dovecot (shared)"
            except psutil.Error:
                continue  # gone meanwhile
        return members

    def _sample(self) -> dict[int, tuple[str, float]]:
        seen = {}
        for pid, server in self._members().items():
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            seen[pid] = (server, times.user + times.system)
        return seen

    def start(self) -> ServerWatch:  # type: ignore[override]
        self._baseline = {pid: cpu for pid, (_, cpu) in self._sample().items()}
        self._machine_start = psutil.cpu_times()
        self.started_at = time.monotonic()
        super().start()
        return self

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self._last.update(self._sample())

    def stop(self) -> None:
        self._last.update(self._sample())
        self._machine_end = psutil.cpu_times()
        self.stopped_at = time.monotonic()
        self._halt.set()
        self.join(5)

    def cpu_seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (server, cpu) in self._last.items():
            totals[server] = totals.get(server, 0.0) + cpu - self._baseline.get(pid, 0.0)
        return totals

    def machine_busy(self) -> tuple[float, float]:
        """(CPU seconds the whole machine was busy, CPU seconds available) over the watch."""
        start, end = self._machine_start, self._machine_end
        idle = (end.idle + getattr(end, "iowait", 0.0)) - (start.idle + getattr(start, "iowait", 0.0))
        total = sum(end) - sum(start)
        return total - idle, total
