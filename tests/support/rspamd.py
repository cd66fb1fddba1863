"""The tests' private rspamd (scripts/rspamd.sh): started on first use, found by its env.

``RspamdServer`` carries the URLs and the controller password that
`scripts/rspamd.sh env` prints; ``instance(...)`` starts a second, separate
instance (its own state dir, ports and Redis database) for a test that must
stop rspamd without disturbing the one every other test uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rspamd.sh"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@dataclass(frozen=True)
class RspamdServer:
    url: str
    controller_url: str
    password: str
    env: dict[str, str]  # RSPAMD_* variables naming this instance for scripts/rspamd.sh

    def settings(self) -> dict[str, str]:
        """Deskmail's settings pointing at this instance."""
        return {"DESKMAIL_RSPAMD_URL": self.url, "DESKMAIL_RSPAMD_CONTROLLER_URL": self.controller_url,
                "DESKMAIL_RSPAMD_PASSWORD": self.password}

    def script(self, command: str) -> str:
        result = subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True,
                                timeout=300, check=False, env={**os.environ, **self.env})
        if result.returncode != 0:
            raise RuntimeError(f"{SCRIPT} {command} failed (exit {result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return result.stdout

    def learned(self) -> int:
        """Messages rspamd's Bayes has learned (both classes), from the controller's /stat."""
        request = urllib.request.Request(self.controller_url + "/stat", headers={"Password": self.password})
        with urllib.request.urlopen(request, timeout=10) as response:
            stat = json.load(response)
        return int(stat.get("learned", 0))


def _start(env: dict[str, str]) -> RspamdServer:
    probe = RspamdServer("", "", "", env)
    probe.script("start")
    values = dict(line.split("=", 1) for line in probe.script("env").splitlines() if "=" in line)
    return RspamdServer(values["DESKMAIL_RSPAMD_URL"], values["DESKMAIL_RSPAMD_CONTROLLER_URL"],
                        values["DESKMAIL_RSPAMD_PASSWORD"], env)


@cache
def ensure_rspamd() -> RspamdServer:
    """The shared test instance, started unless it runs already; once per process."""
    return _start({})


def instance(name: str, port: int) -> RspamdServer:
    """A separate instance: scanner on `port`, controller on port + 1, DNS on port + 2."""
    return _start({"RSPAMD_DIR": f"/tmp/deskmail-rspamd-{name}", "RSPAMD_PORT": str(port),
                   "RSPAMD_CONTROLLER_PORT": str(port + 1), "RSPAMD_DNS_PORT": str(port + 2),
                   "RSPAMD_REDIS_DB": "15"})
