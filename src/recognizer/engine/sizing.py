"""How many threads the engine runs, how long batches wait and how much memory decoding may
hold, where the settings say "auto".

On the CPU every stage gets every core: OpenVINO schedules its streams on all of them
(backends/plan.py), ONNX Runtime and PyTorch are called from one thread per core with an
equal share each, and one decoding thread runs per core. On CUDA two workers feed the
device, each on a stream of its own, so one batch is copied, decoded and prepared while
the other runs the model; a batch waits up to 2 ms to fill (on the CPU it never waits:
that would idle the cores), and JPEGs are decoded there, where the backend can.

"Cores" and "memory" are what this process may use, not what the host has: in a container
`os.cpu_count()` is the host's count, so the CPU quota (cgroup v2 `cpu.max`, v1
`cpu.cfs_quota_us`) and the affinity mask bound it, and the memory limit comes from the
cgroup (`memory.max`, v1 `memory.limit_in_bytes`) before the machine's RAM.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from recognizer.config.schema import EngineSettings, MiB

GPU_BATCH_DELAY_S = 0.002
CUDA_WORKERS = 2  # one batch prepared on its stream while the other runs the model
DECODE_SHARE_OF_MEMORY = 4  # decoding may hold a quarter of the memory limit at once
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a huge number (2**63 rounded to pages)


@dataclass(frozen=True)
class Cgroup:
    """Where this process's cgroup limits are: the cgroup mount and /proc/self/cgroup's text.

    /proc/self/cgroup names the process's cgroup ("0::/path" in v2, "N:cpu,cpuacct:/path"
    in v1); inside a container the cgroup namespace usually makes that the mount's root.
    A limit anywhere from the process's cgroup up to the root applies, so each is read.
    """

    root: Path = Path("/sys/fs/cgroup")
    membership: str = ""

    @classmethod
    def of_this_process(cls) -> Cgroup:
        try:
            return cls(membership=Path("/proc/self/cgroup").read_text())
        except OSError:  # not Linux
            return cls()

    def cpu_quota(self) -> float | None:
        """CPUs' worth of time per period (1.5 for "150000 100000"), if limited."""
        quotas = []
        for directory in self._dirs("cpu"):
            v2 = _read(directory / "cpu.max")
            if v2 is not None and not v2.startswith("max"):
                quota, period = v2.split()
                quotas.append(int(quota) / int(period))
            quota_us = _read(directory / "cpu.cfs_quota_us")
            period_us = _read(directory / "cpu.cfs_period_us")
            if quota_us is not None and period_us is not None and int(quota_us) > 0:
                quotas.append(int(quota_us) / int(period_us))
        return min(quotas, default=None)

    def memory_limit(self) -> int | None:
        """Bytes the cgroup may use, if limited."""
        limits = []
        for directory in self._dirs("memory"):
            for name in ("memory.max", "memory.limit_in_bytes"):
                value = _read(directory / name)
                if value is not None and value != "max" and int(value) < _UNLIMITED:
                    limits.append(int(value))
        return min(limits, default=None)

    def memory_headroom(self) -> int | None:
        """Bytes the cgroup may still take before its tightest limit, if limited."""
        headrooms = []
        for directory in self._dirs("memory"):
            for limit_name, usage_name in (
                ("memory.max", "memory.current"),
                ("memory.limit_in_bytes", "memory.usage_in_bytes"),
            ):
                limit, usage = _read(directory / limit_name), _read(directory / usage_name)
                if limit is None or usage is None or limit == "max" or int(limit) >= _UNLIMITED:
                    continue
                headrooms.append(int(limit) - int(usage))
        return min(headrooms, default=None)

    def _dirs(self, controller: str) -> list[Path]:
        """The directories of the process's cgroup and its ancestors that exist."""
        found: list[Path] = []
        for line in self.membership.splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # v2, unified
                mount = self.root
            elif controller in controllers.split(","):
                mount = self.root / controllers
            else:
                continue
            directory = mount / path.lstrip("/")
            found += [directory, *directory.parents[: len(directory.relative_to(mount).parts)]]
            found.append(mount)  # the namespace's root, when the path is the host's
        return [directory for directory in dict.fromkeys(found) if directory.is_dir()]


def cpus(cgroup: Cgroup | None = None) -> int:
    """The CPUs this process may use: its affinity mask, bounded by its cgroup CPU quota."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        allowed = os.cpu_count() or 1
    quota = (cgroup or Cgroup.of_this_process()).cpu_quota()
    return allowed if quota is None else max(1, min(allowed, math.ceil(quota)))


def memory_limit(cgroup: Cgroup | None = None) -> int:
    """Bytes this process may use: its cgroup's memory limit, else the machine's RAM."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = (cgroup or Cgroup.of_this_process()).memory_limit()
    return physical if limit is None else min(limit, physical)


def memory_available(cgroup: Cgroup | None = None) -> int:
    """Bytes this process may still take: its cgroup's headroom, and the machine's
    MemAvailable, whichever is less."""
    available = [_meminfo_available()]
    headroom = (cgroup or Cgroup.of_this_process()).memory_headroom()
    if headroom is not None:
        available.append(headroom)
    return max(min(available), 0)


def _meminfo_available() -> int:
    for line in (_read(Path("/proc/meminfo")) or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return memory_limit()


def worker_threads(asked: int | None, device: str) -> int:
    """Threads calling a backend that does not schedule its own calls: as many as asked,
    else one per core on the CPU and CUDA_WORKERS on CUDA."""
    if asked is not None:
        return asked
    return cpus() if device == "cpu" else CUDA_WORKERS


def preprocess_threads(settings: EngineSettings) -> int:
    return settings.preprocess_threads or cpus()


def batch_delay_s(settings: EngineSettings, device: str) -> float:
    """Seconds a batch waits to fill once its first request is in."""
    if settings.max_batch_delay_ms is not None:
        return settings.max_batch_delay_ms / 1000
    return 0.0 if device == "cpu" else GPU_BATCH_DELAY_S


def device_decode(settings: EngineSettings, device: str) -> bool:
    """Whether JPEGs are decoded on the model's device, where its backend can: --device-decode
    on, or auto on CUDA (where Pillow's few hundred images a second per core would be the wall)."""
    return settings.device_decode == "on" or (
        settings.device_decode == "auto" and device.startswith("cuda")
    )


def decode_budget_bytes(settings: EngineSettings) -> int:
    """Bytes of pixels the decoding threads may hold at once."""
    if settings.decode_budget_mb is not None:
        return math.floor(settings.decode_budget_mb * MiB)
    return memory_limit() // DECODE_SHARE_OF_MEMORY


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None
