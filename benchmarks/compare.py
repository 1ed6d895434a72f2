"""Measure recognizer against the in-process limit and the seed baseline, in one run.

    python benchmarks/compare.py [--out bench-results/] [--quick] [--serve-arg=FLAG ...]

On the same machine and the same images, back to back:
1. the limit: benchmarks/limit.py, the model and preprocessing in one process, no RPC;
2. recognizer: `python -m recognizer serve` with its default settings (and any
   --serve-arg) on a free loopback port, loaded by `recognizer bench` (closed loop, every
   image sent once so no cache answers) at each concurrency of the sweep;
3. the seed baseline: benchmarks/seed_baseline.py served and loaded the same way.
For the two services it also measures the latency of requests sent one at a time to an
idle server (concurrency 1) against the p99 of an open loop at half the best throughput
of the sweep. Last, it runs the three back to back in a few interleaved rounds (the
limit at each of its batch sizes, keeping the best; every other round in reverse order)
and quotes the throughput ratios as the median of the rounds' ratios, since a shared
machine's speed drifts between minutes. It prints one table with the ratios, and writes
compare.json (every document the runs produced, with the machine and versions) and
compare.png (throughput and p99 latency against concurrency) into --out. --quick
shortens every phase, for a smoke test; its numbers mean nothing.

The rounds also run, when they can: recognizer in each of --precisions beyond fp32 (int8
by default, and bf16 on CPUs that have it), with the limit measured in that precision
too (int8 is served with --int8-min-agreement 0: this measures speed, and the agreement
the server measured is reported beside it); and NVIDIA Triton serving the same graph
with OpenVINO (benchmarks/triton_peer.py), when --triton-python names a Python with
PyTriton (default: .venv-triton/bin/python in the checkout, if it exists).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
SERVICE_READY = re.compile(r"serving recognizer\.v1\.Recognizer on ([\d.]+:\d+)")
BASELINE_READY = re.compile(r"listening on (http://[\d.]+:\d+)")
START_TIMEOUT_S = 900.0  # a first int8 start quantises the model
SERVICES = (("recognizer", "recognizer"), ("seed baseline", "baseline"))  # (name, results key)
QUIET_LOAD_PER_CPU = 0.75  # a round starts at a 1-minute load under 1.5 on two cores
QUIET_WAIT_S = 240.0  # the longest wait for it, after which the round runs and is not quoted
OTHER_CORES = 0.25  # cores other processes may have used during a quoted round
VERSIONS = (
    "recognizer",
    "torch",
    "torchvision",
    "openvino",
    "onnxruntime",
    "numpy",
    "pillow",
    "grpcio",
    "protobuf",
    "fastapi",
    "uvicorn",
    "httpx",
    "nncf",
)


@dataclass(frozen=True)
class Plan:
    """How long each phase runs; --quick shortens everything."""

    concurrencies: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    warmup_s: float = 3.0
    duration_s: float = 10.0
    limit_batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    limit_warmup_s: float = 1.0
    limit_duration_s: float = 5.0
    rounds: int = 3
    round_concurrency: int = 16


QUICK = Plan(
    concurrencies=(1, 4),
    warmup_s=0.5,
    duration_s=1.0,
    limit_batch_sizes=(1, 4),
    limit_warmup_s=0.3,
    limit_duration_s=1.0,
    rounds=1,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument(
        "--images", type=Path, help="folder of images (default: make the set in --out/images)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        help="the sweep (default: 1 2 4 8 16 32; 1 is always added)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="client processes for recognizer bench (default: 1)",
    )
    parser.add_argument(
        "--rounds", type=int, help="interleaved rounds the ratios are the median of (default: 3)"
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more flag for recognizer serve, repeatable (--serve-arg=--http-port=0 checks"
        " that serving HTTP beside gRPC costs gRPC nothing)",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "int8", *(["bf16"] if _has_bf16() else [])],
        help="recognizer's precisions in the rounds (default: fp32 int8, and bf16 where the"
        " CPU has it)",
    )
    add_triton_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke test: every phase short")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.rounds:
        plan = Plan(**{**asdict(plan), "rounds": args.rounds})
    if args.concurrency:
        plan = Plan(**{**asdict(plan), "concurrencies": tuple(args.concurrency)})
    plan = Plan(**{**asdict(plan), "concurrencies": tuple(sorted({1, *plan.concurrencies}))})
    args.out.mkdir(parents=True, exist_ok=True)
    images = args.images or args.out / "images"
    if not args.images:
        subprocess.run(
            [PYTHON, str(HERE / "images.py"), str(images)], check=True, stdout=sys.stderr
        )

    print("1/4 the limit", file=sys.stderr)
    limit = run_limit(images, plan, plan.limit_batch_sizes)
    recognizer_command = [PYTHON, "-m", "recognizer", "serve", "--port", "0", *args.serve_arg]
    baseline_command = [PYTHON, str(HERE / "seed_baseline.py"), "serve", "--port", "0"]
    others = [precision for precision in args.precisions if precision != "fp32"]
    triton = args.triton_python if args.triton_python.exists() else None
    if triton is None:
        print(f"no Triton peer: {args.triton_python} does not exist", file=sys.stderr)
    with (
        started(recognizer_command, SERVICE_READY) as address,
        started(baseline_command, BASELINE_READY) as url,
        ExitStack() as stack,
    ):
        precise = {
            precision: stack.enter_context(
                started([*recognizer_command, *precision_flags(precision)], SERVICE_READY)
            )
            for precision in others
        }
        triton_url = (
            stack.enter_context(started_triton(triton, args.out, args.triton_instances))
            if triton
            else None
        )

        def ours(flag: str, value: str) -> dict[str, Any]:
            return bench_service(address, images, plan, args.processes, flag, value)

        def theirs(flag: str, value: str) -> dict[str, Any]:
            return bench_baseline(f"{url}/predict", images, plan, flag, value)

        print("2/4 recognizer", file=sys.stderr)
        service = measure_service(ours, plan)
        print("3/4 the seed baseline", file=sys.stderr)
        baseline = measure_service(theirs, plan)
        print("4/4 interleaved rounds: limit, recognizer, baseline", file=sys.stderr)
        concurrency = str(plan.round_concurrency)
        measures: dict[str, Callable[[], dict[str, Any]]] = {
            "limit": lambda: run_limit(images, plan, plan.limit_batch_sizes),
            "recognizer": lambda: ours("--concurrency", concurrency),
            "baseline": lambda: theirs("--concurrency", concurrency),
        }
        for precision, served in precise.items():
            measures[f"limit_{precision}"] = functools.partial(
                run_limit, images, plan, plan.limit_batch_sizes, precision
            )
            measures[f"recognizer_{precision}"] = functools.partial(
                bench_service, served, images, plan, args.processes, "--concurrency", concurrency
            )
        if triton_url:
            measures["triton"] = functools.partial(
                bench_triton, triton_url, images, plan, "--concurrency", concurrency
            )
        measured = [interleaved_round(measures, index) for index in range(plan.rounds)]
        rounds = [one for one, load in measured if load["quotable"]]
        if len(rounds) < len(measured):
            print(
                f"{len(measured) - len(rounds)} round(s) not quoted: the machine was not quiet",
                file=sys.stderr,
            )

    results = {
        "machine": machine(),
        "plan": asdict(plan),
        "quick": args.quick,
        "serve_args": args.serve_arg,
        "limit": limit,
        "recognizer": service,
        "baseline": baseline,
        "rounds": rounds,
        "all_rounds": [one for one, _ in measured],
        "round_load": [load for _, load in measured],
    }
    results["ratios"] = ratios(results)
    (args.out / "compare.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(report(results))
    plot(results, args.out / "compare.png")
    print(f"\nwrote {args.out / 'compare.json'} and {args.out / 'compare.png'}")


def interleaved_round(
    measures: dict[str, Callable[[], dict[str, Any]]], index: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """One round of every measure, in reverse order every other round so drift evens out,
    started once the machine is quiet; with what else ran on it meanwhile."""
    names = list(measures) if index % 2 == 0 else list(reversed(measures))
    before = wait_until_quiet()
    account = CpuAccount()
    measured = {name: measures[name]() for name in names}
    load = {"load_before": before, "load_after": round(os.getloadavg()[0], 2), **account.end()}
    load["quotable"] = before <= quiet_load() and load["other_cores"] <= OTHER_CORES
    print(f"round {index + 1}: {load}", file=sys.stderr)
    return measured, load


def quiet_load() -> float:
    """The 1-minute load average under which a round may start: 1.5 on two cores."""
    return QUIET_LOAD_PER_CPU * (os.cpu_count() or 1)


def wait_until_quiet(timeout: float = QUIET_WAIT_S) -> float:
    """Wait until the load average left by the last round has decayed under quiet_load()
    (or `timeout` passes); the load average then."""
    deadline = time.monotonic() + timeout
    while (load := os.getloadavg()[0]) > quiet_load() and time.monotonic() < deadline:
        time.sleep(5)
    return round(load, 2)


class CpuAccount:
    """The CPU the machine spent from now on, and how much of it went to processes other
    than this script and its children (the services, load generators and the limit): the
    others' share says whether the round was measured alone. Steal is the hypervisor's."""

    def __init__(self) -> None:
        self._start = (_machine_cpu(), _our_cpu(), time.monotonic())

    def end(self) -> dict[str, float]:
        (busy, steal), ours, started = self._start
        (busy_now, steal_now), ours_now = _machine_cpu(), _our_cpu()
        seconds = time.monotonic() - started
        return {
            "other_cores": round(max(0.0, (busy_now - busy) - (ours_now - ours)) / seconds, 3),
            "steal_cores": round((steal_now - steal) / seconds, 3),
        }


def _machine_cpu() -> tuple[float, float]:
    """Seconds of CPU the machine has spent busy (user, nice, system, interrupts), and
    stolen by the hypervisor, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _our_cpu() -> float:
    """Seconds of CPU this process and its descendants have used, the ended ones included."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:  # ended meanwhile: its parent's children_* count it
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def precision_flags(precision: str) -> list[str]:
    """recognizer serve's flags for a precision, with its shipped defaults (int8's gate)."""
    return ["--precision", precision]


def add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    """The Triton peer's flags, for every script that runs it."""
    parser.add_argument(
        "--triton-python",
        type=Path,
        default=HERE.parent / ".venv-triton" / "bin" / "python",
        help="a Python with PyTriton for the Triton peer (default: .venv-triton/bin/python;"
        " skipped if missing)",
    )
    parser.add_argument(
        "--triton-instances",
        type=int,
        default=4,
        help="the Triton peer's model instances (default: 4, its best setting measured)",
    )


@contextmanager
def started_triton(python: Path, out: Path, instances: int) -> Iterator[str]:
    """The Triton peer serving the graph recognizer exports, on a free port."""
    model = out / "triton-model"
    export = [PYTHON, str(HERE / "triton_peer.py"), "export", "--out", str(model)]
    subprocess.run(export, check=True, stdout=sys.stderr)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(python), str(HERE / "triton_peer.py"), "serve", "--port", str(port)]
    command += ["--model-file", str(model / "model.onnx"), "--instances", str(instances)]
    with started(command, BASELINE_READY) as url:
        yield url


def bench_triton(url: str, images: Path, plan: Plan, flag: str, value: str) -> dict[str, Any]:
    return run_json(
        [PYTHON, str(HERE / "triton_peer.py"), "load", "--url", url], images, plan, [flag, value]
    )


def _has_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def run_limit(
    images: Path, plan: Plan, batch_sizes: Sequence[int], precision: str = "fp32"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "limit.json"
        command = [PYTHON, str(HERE / "limit.py"), "--images", str(images), "--json", str(output)]
        command += ["--warmup", str(plan.limit_warmup_s), "--duration", str(plan.limit_duration_s)]
        command += ["--batch-sizes", *map(str, batch_sizes), "--precision", precision]
        command += ["--runtime-seconds", str(max(1, round(plan.limit_duration_s * 2)))]
        subprocess.run(command, check=True, stdout=sys.stderr)
        result: dict[str, Any] = json.loads(output.read_text())
    return result


def measure_service(bench: Callable[[str, str], dict[str, Any]], plan: Plan) -> dict[str, Any]:
    """The sweep, then an open loop at half the best throughput; `bench(flag, value)` runs one."""
    sweep = {str(c): bench("--concurrency", str(c)) for c in plan.concurrencies}
    best = max(sweep.values(), key=lambda summary: summary["throughput_rps"])
    half_rate = best["throughput_rps"] / 2
    half_load = bench("--rate", f"{half_rate:.3f}") if half_rate > 0 else None
    return {"sweep": sweep, "half_load": half_load}


def bench_service(
    address: str, images: Path, plan: Plan, processes: int, flag: str, value: str
) -> dict[str, Any]:
    if flag == "--concurrency":  # each client process needs a caller of its own
        processes = min(processes, int(value))
    command = [PYTHON, "-m", "recognizer", "bench", "--server", address, "--unique"]
    command += ["--processes", str(processes)]
    return run_json(command, images, plan, [flag, value])


def bench_baseline(url: str, images: Path, plan: Plan, flag: str, value: str) -> dict[str, Any]:
    return run_json(
        [PYTHON, str(HERE / "seed_baseline.py"), "load", "--url", url], images, plan, [flag, value]
    )


class Timed(Protocol):
    """A plan's warm-up and measured seconds for each run."""

    @property
    def warmup_s(self) -> float: ...

    @property
    def duration_s(self) -> float: ...


def run_json(
    command: list[str], images: Path, plan: Timed, arguments: Sequence[str]
) -> dict[str, Any]:
    """Run one load generator with its JSON on stdout; its report goes to our stderr."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "run.json"
        command = [*command, "--images", str(images), *arguments, "--json", str(output)]
        command += ["--warmup", str(plan.warmup_s), "--duration", str(plan.duration_s)]
        print("$ python", " ".join(command[1:]), file=sys.stderr)
        # A run where every request failed exits 1 but still writes its document.
        subprocess.run(command, check=False, stdout=sys.stderr)
        if not output.exists():
            raise RuntimeError(f"no results from: {' '.join(command)}")
        summary: dict[str, Any] = json.loads(output.read_text())
    return summary


@contextmanager
def started(command: Sequence[str], ready: re.Pattern[str]) -> Iterator[str]:
    """Start a server process, yield the address its log announces, then SIGTERM it."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    announced: list[str] = []
    found = threading.Event()

    def read_log() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(f"  | {line}")
            if not announced and (match := ready.search(line)):
                announced.append(match.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        if not found.wait(START_TIMEOUT_S) or not announced:
            raise RuntimeError(f"{' '.join(command)} did not start")
        yield announced[0]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """The claims, as ratios of numbers measured in this run.

    Throughput ratios are the median over the interleaved rounds, each round measuring
    the three back to back, because a shared machine's speed drifts from minute to minute.
    """
    rounds = results["rounds"]
    extra: dict[str, float | None] = {
        "recognizer_over_whole_job_limit": _median(
            _ratio(
                r["recognizer"]["throughput_rps"], r["limit"].get("whole_job_limit_images_per_s")
            )
            for r in rounds
        )
    }
    precisions = [key.removeprefix("recognizer_") for key in (rounds[0] if rounds else ())]
    precisions = [key for key in precisions if key in ("int8", "bf16", "fp16")]
    for precision in precisions:
        ours = f"recognizer_{precision}"
        extra[f"{ours}_over_recognizer"] = _median(
            _ratio(r[ours]["throughput_rps"], r["recognizer"]["throughput_rps"]) for r in rounds
        )
        extra[f"{ours}_over_whole_job_limit"] = _median(
            _ratio(
                r[ours]["throughput_rps"],
                r[f"limit_{precision}"].get("whole_job_limit_images_per_s"),
            )
            for r in rounds
        )
        extra[f"{ours}_p99_over_recognizer_p99"] = _median(
            _ratio(_p99(r[ours]), _p99(r["recognizer"])) for r in rounds
        )
        if all("triton" in r for r in rounds):
            extra[f"{ours}_over_triton"] = _median(
                _ratio(r[ours]["throughput_rps"], r["triton"]["throughput_rps"]) for r in rounds
            )
    if rounds and all("triton" in r for r in rounds):
        extra["recognizer_over_triton"] = _median(
            _ratio(r["recognizer"]["throughput_rps"], r["triton"]["throughput_rps"]) for r in rounds
        )
    return {
        **extra,
        "recognizer_over_limit": _median(
            _ratio(r["recognizer"]["throughput_rps"], r["limit"]["images_per_s"]) for r in rounds
        ),
        "recognizer_over_baseline": _median(
            _ratio(r["recognizer"]["throughput_rps"], r["baseline"]["throughput_rps"])
            for r in rounds
        ),
        **{
            f"{key}_half_load_p99_over_idle_p50": _ratio(
                _p99(results[key]["half_load"]), results[key]["sweep"]["1"]["latency_ms"]["p50"]
            )
            for _, key in SERVICES
        },
    }


def report(results: dict[str, Any]) -> str:
    limit, ratio = results["limit"], results["ratios"]
    lines = [
        f"{'best throughput':<28}{'img/s':>8}{'p50 ms':>8}{'p99 ms':>8}  at",
        f"{'limit (in-process, no RPC)':<28}{_num(limit['images_per_s']):>8}{'':>16}"
        f"  batch {limit['best_batch_size']}",
    ]
    for name, key in SERVICES:
        best = _best(results[key])
        lines.append(
            f"{name:<28}{_num(best['throughput_rps']):>8}{_num(best['latency_ms']['p50']):>8}"
            f"{_num(best['latency_ms']['p99']):>8}  concurrency {best['setup']['concurrency']}"
        )
    lines += [
        "",
        f"interleaved rounds at concurrency {results['plan']['round_concurrency']}:"
        f"{'limit':>10}{'recognizer':>12}{'baseline':>10}  (img/s)  load before/after,"
        " other processes' cores, stolen cores",
    ]
    for index, (one, load) in enumerate(
        zip(results["all_rounds"], results["round_load"], strict=True), start=1
    ):
        lines.append(
            f"{'round ' + str(index):<36}{_num(one['limit']['images_per_s']):>10}"
            f"{_num(one['recognizer']['throughput_rps']):>12}"
            f"{_num(one['baseline']['throughput_rps']):>10}"
            f"  {load['load_before']}/{load['load_after']}, {load['other_cores']},"
            f" {load['steal_cores']}{'' if load['quotable'] else '  NOT QUOTED'}"
        )
    lines += ["", "every measure of the quoted rounds (img/s; p99 ms for the services):"]
    for name in results["rounds"][0] if results["rounds"] else ():
        row: list[str] = []
        for one in results["rounds"]:
            measured = one[name]
            if "throughput_rps" in measured:
                row.append(f"{_num(measured['throughput_rps'])} ({_num(_p99(measured))})")
            else:
                whole = measured.get("whole_job_limit_images_per_s")
                row.append(f"{_num(measured['images_per_s'])} [whole job {_num(whole)}]")
        lines.append(f"  {name:<18}" + "  ".join(row))
    lines += [""] + [
        f"{name:<48}{_num(value, 2)}  (median of rounds)"
        for name, value in ratio.items()
        if value is not None and "half_load" not in name
    ]
    lines += [
        "",
        f"recognizer / limit     {_num(ratio['recognizer_over_limit'], 2)}  (median of rounds)",
        f"recognizer / baseline  {_num(ratio['recognizer_over_baseline'], 2)}  (median of rounds)",
        "",
        f"{'latency (ms)':<28}{'idle p50':>10}{'idle p99':>10}{'p99 at half load':>18}"
        f"{'ratio':>8}  (rate)",
    ]
    for name, key in SERVICES:
        idle, half = results[key]["sweep"]["1"], results[key]["half_load"]
        lines.append(
            f"{name:<28}{_num(idle['latency_ms']['p50']):>10}{_num(_p99(idle)):>10}"
            f"{_num(_p99(half)):>18}"
            f"{_num(ratio[f'{key}_half_load_p99_over_idle_p50'], 2):>8}"
            f"  ({_num(half and half['setup']['rate'])}/s)"
        )
    lines += [
        "",
        f"{'concurrency':<12}"
        + "".join(f"{name + ' img/s':>22}{'p99 ms':>8}" for name, _ in SERVICES),
    ]
    for level in results["recognizer"]["sweep"]:
        cells = [results[key]["sweep"][level] for _, key in SERVICES]
        lines.append(
            f"{level:<12}"
            + "".join(f"{_num(c['throughput_rps']):>22}{_num(_p99(c)):>8}" for c in cells)
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput and p99 latency against concurrency, the limit drawn across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    levels = [int(level) for level in results["recognizer"]["sweep"]]
    for name, key in SERVICES:
        sweep = results[key]["sweep"]
        throughput.plot(levels, [s["throughput_rps"] for s in sweep.values()], "o-", label=name)
        latency.plot(levels, [_p99(s) for s in sweep.values()], "o-", label=name)
    limit = results["limit"]["images_per_s"]
    throughput.axhline(limit, color="grey", linestyle="--", label="in-process limit")
    throughput.set_ylim(bottom=0)
    latency.set_yscale("log")
    latency.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    latency.yaxis.set_major_formatter(ScalarFormatter())
    latency.yaxis.set_minor_formatter(NullFormatter())
    for axes, title, unit in (
        (throughput, "throughput", "images/s"),
        (latency, "p99 latency", "ms"),
    ):
        axes.set_xscale("log", base=2)
        axes.set_xticks(levels, [str(level) for level in levels])
        axes.set_xlabel("concurrency (closed loop)")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend()
    where = results["machine"]
    title = f"{where['cpu']}, {where['cpu_count']} CPUs, recognizer {where['commit']}"
    figure.suptitle(
        title + (" (--quick: a smoke test, not a measurement)" if results["quick"] else "")
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def machine() -> dict[str, Any]:
    """Where the numbers came from: the CPU, the system, the versions, the commit."""
    versions: dict[str, str | None] = {}
    for package in VERSIONS:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit or None,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _best(service: dict[str, Any]) -> dict[str, Any]:
    best: dict[str, Any] = max(service["sweep"].values(), key=lambda s: s["throughput_rps"])
    return best


def _p99(summary: dict[str, Any] | None) -> float | None:
    return None if summary is None else summary["latency_ms"]["p99"]


def _median(values: Iterable[float | None]) -> float | None:
    known = sorted(value for value in values if value is not None)
    return statistics.median(known) if known else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top is not None and bottom else None


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
