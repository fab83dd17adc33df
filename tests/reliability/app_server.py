"""`mimicsafe serve` as a real subprocess for the fault and hostile-input tests: start, wait, measure, kill.

The server runs on a free loopback port with the test instance's home (and database, when the suite
runs against PostgreSQL), without the embedded job worker, and with its own Gradio upload folder so a
test can see what a killed server left there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mimicsafe.context import Instance
from tests.reliability.helpers import child_env
from tests.servers import free_port_number, wait_for_http
from tests.servers import stop as stop_process

START_GUARD_S = 240  # a hang guard for a start on a busy machine, not a speed assertion


class AppServer:
    def __init__(self, instance: Instance, workdir: Path) -> None:
        self.instance = instance
        self.upload_folder = workdir / "gradio-uploads"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> AppServer:
        port = free_port_number()
        self.url = f"http://127.0.0.1:{port}"
        env = {**child_env(self.instance), "GRADIO_TEMP_DIR": str(self.upload_folder), "OMP_NUM_THREADS": "1",
               "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ui", "serve", "--no-embedded-worker",
                                          "--host", "127.0.0.1", "--port", str(port)],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_http(self.url + "/login", self.proc, START_GUARD_S, output=self.log)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def peak_rss_bytes(self) -> int:
        """The server process's peak resident memory so far (VmHWM)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs, as in a power loss or the OOM killer."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def audit_verify(instance: Instance) -> subprocess.CompletedProcess[str]:
    """`mimicsafe audit verify` as a separate process against the same home and database."""
    return subprocess.run([sys.executable, "-m", "ui", "audit", "verify"], env=child_env(instance),
                          capture_output=True, text=True, timeout=300)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()

