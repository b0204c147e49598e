"""`sail-tinker serve` processes and TLS material for the cluster tests."""
from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time

from conftest import sail_tinker_bin

# Failure detection of every process in these tests (the trainer side sets
# the same through cluster_options).
HEARTBEAT = ["--middleman.heartbeat-interval=200ms", "--middleman.connection-timeout=1s"]


class ServeNode:
    """One `sail-tinker serve` against the emulator, on 127.0.0.1:<any port>."""

    def __init__(self, emu, extra: list[str] | None = None):
        env = dict(os.environ, SAIL_API_KEY=emu.api_key, SAIL_BASE_URL=emu.base_url)
        env.pop("TINKER_API_KEY", None)
        env.pop("TINKER_BASE_URL", None)
        # The node is not a Python process: no sanitizer preload for it.
        env.pop("LD_PRELOAD", None)
        args = [sail_tinker_bin(), "serve", "--port", "0", "--metrics-port", "0",
                "--log-level", "warn", *HEARTBEAT, *(extra or [])]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env)
        self._buf = b""
        line = self._wait_for_line(b"listening on caf://", 30.0)
        m = re.fullmatch(r"listening on caf://127\.0\.0\.1:(\d+)", line or "")
        if not m:
            err = self.proc.stderr.read1(65536).decode(errors="replace") if self.proc.stderr else ""
            self.kill()
            raise RuntimeError(f"serve did not start: {line!r} {err}")
        self.port = int(m.group(1))
        self.address = f"127.0.0.1:{self.port}"

    def _wait_for_line(self, prefix: bytes, timeout: float) -> str | None:
        """Reads stdout (woken by the pipe, bounded by timeout) until a line
        starting with prefix arrives."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buf:
                    line, self._buf = self._buf.split(b"\n", 1)
                    if line.startswith(prefix):
                        return line.decode()
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buf += chunk

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        """SIGTERM and wait: the exit code (0 for a clean stop)."""
        self.signal(signal.SIGTERM)
        return self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


def make_certs(directory: str) -> dict[str, str]:
    """A cluster CA and two leaf certificates (node, trainer) signed by it,
    made with the openssl CLI (as tests/support/certs_cluster.cpp)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # a sanitizer runtime is for the Python tests only

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, env=env)

    def ca(name):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{directory}/{name}.key",
            "-out", f"{directory}/{name}.pem", "-days", "2", "-subj", f"/CN=sail-tinker {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name):
        with open(f"{directory}/{name}.ext", "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n"
                    "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{directory}/{name}.key",
            "-out", f"{directory}/{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{directory}/{name}.csr", "-CA", f"{directory}/ca.pem",
            "-CAkey", f"{directory}/ca.key", "-CAcreateserial", "-out", f"{directory}/{name}.pem",
            "-days", "2", "-extfile", f"{directory}/{name}.ext")

    ca("ca")
    leaf("node")
    leaf("trainer")
    return {"ca": f"{directory}/ca.pem",
            "node_cert": f"{directory}/node.pem", "node_key": f"{directory}/node.key",
            "trainer_cert": f"{directory}/trainer.pem", "trainer_key": f"{directory}/trainer.key"}
