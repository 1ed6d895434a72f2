"""Threads, batching delays and the decode budget where the settings say "auto": chosen for
the device and for the container's CPU quota and memory limit."""

from __future__ import annotations

import os
from pathlib import Path

from recognizer.config.schema import EngineSettings
from recognizer.engine import sizing


def test_unset_settings_follow_the_device() -> None:
    auto = EngineSettings()
    assert sizing.batch_delay_s(auto, "cpu") == 0
    assert sizing.batch_delay_s(auto, "cuda:0") == sizing.GPU_BATCH_DELAY_S
    assert sizing.worker_threads(auto.inference_workers, "cuda:0") == sizing.CUDA_WORKERS == 2
    assert sizing.worker_threads(auto.inference_workers, "cpu") == sizing.cpus()
    assert sizing.preprocess_threads(auto) == sizing.cpus()


def test_set_values_are_kept() -> None:
    fixed = EngineSettings(max_batch_delay_ms=5, inference_workers=3, preprocess_threads=7)
    assert sizing.batch_delay_s(fixed, "cpu") == 0.005
    assert sizing.worker_threads(fixed.inference_workers, "cpu") == 3
    assert sizing.preprocess_threads(fixed) == 7


def test_jpegs_are_decoded_on_the_device_on_cuda_or_when_asked() -> None:
    auto = EngineSettings()
    assert sizing.device_decode(auto, "cuda:0")
    assert not sizing.device_decode(auto, "cpu")
    assert sizing.device_decode(EngineSettings(device_decode="on"), "cpu")
    assert not sizing.device_decode(EngineSettings(device_decode="off"), "cuda:0")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


def test_a_cgroup_v2_quota_and_memory_limit_are_read_up_the_hierarchy(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "kubepods/pod1/cpu.max": "150000 100000",  # the pod: 1.5 CPUs
            "kubepods/pod1/app/cpu.max": "max 100000",  # the container: no quota of its own
            "kubepods/pod1/app/memory.max": str(2 << 30),
            "kubepods/memory.max": "max",
        },
    )
    cgroup = sizing.Cgroup(root, "0::/kubepods/pod1/app\n")
    assert cgroup.cpu_quota() == 1.5
    assert cgroup.memory_limit() == 2 << 30
    assert sizing.cpus(cgroup) == min(2, len(os.sched_getaffinity(0)))  # 1.5 rounds up
    assert sizing.memory_limit(cgroup) == min(2 << 30, sizing.memory_limit(sizing.Cgroup()))


def test_a_cgroup_v1_cfs_quota_and_memory_limit_are_read(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            "memory/memory.limit_in_bytes": str(512 << 20),  # a namespaced mount: at its root
        },
    )
    membership = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    cgroup = sizing.Cgroup(root, membership)
    assert (cgroup.cpu_quota(), cgroup.memory_limit()) == (1.0, 512 << 20)
    assert sizing.cpus(cgroup) == 1


def test_no_limits_mean_the_machines_own(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
            "memory/memory.limit_in_bytes": "9223372036854771712",
        },
    )
    cgroup = sizing.Cgroup(root, "2:cpu:/\n1:memory:/\n0::/\n")
    assert (cgroup.cpu_quota(), cgroup.memory_limit()) == (None, None)
    assert sizing.cpus(cgroup) == len(os.sched_getaffinity(0))


def test_the_decode_budget_is_a_quarter_of_the_memory_limit_unless_set() -> None:
    assert sizing.decode_budget_bytes(EngineSettings(decode_budget_mb=8)) == 8 << 20
    auto = sizing.decode_budget_bytes(EngineSettings())
    assert auto == sizing.memory_limit() // sizing.DECODE_SHARE_OF_MEMORY
