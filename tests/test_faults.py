"""The fault suite of benchmarks/faults.py, smaller, against real servers on loopback.

Good traffic runs throughout each phase from another peer address (::1, where the abuse
comes from 127.0.0.1), without retries: it must lose nothing. Each phase also checks
that nothing came back INTERNAL and that the server still says SERVING.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import psutil
import pytest

from fakes import ColourNet, colour_model, solid_png
from support import ServerThread, load_script

COLOURS = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]


@pytest.fixture(scope="module")
def faults() -> ModuleType:
    return load_script("faults")


def serve(**engine: Any) -> ServerThread:
    network = ColourNet(delay_s=engine.pop("delay_s", 0.0))
    return ServerThread([colour_model(network=network)], server={"host": "localhost"}, **engine)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with serve(max_batch_size=4) as running:
        yield running


def peers(running: ServerThread) -> tuple[str, str]:
    """The abusers' address and the good client's: two hosts, as far as the server knows."""
    return f"127.0.0.1:{running.server.grpc.port}", f"[::1]:{running.server.grpc.port}"


def good_traffic(faults: ModuleType, running: ServerThread, rate: float = 5.0) -> Any:
    _, good = peers(running)
    reference = faults.reference_answers(good, [solid_png(colour) for colour in COLOURS])
    assert [expected for _, expected in reference] == [0, 1, 2]
    return faults.GoodTraffic(good, reference, rate=rate)


def settled(running: ServerThread) -> None:
    """Nothing left over: no request held, no stream open, and health says SERVING."""
    deadline = time.monotonic() + 10
    engine = running.engine
    while (engine.pending() or engine.open_streams) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (engine.pending(), engine.open_streams) == (0, 0)
    assert all(model.serving for model in engine.describe())


def test_every_hostile_input_gets_its_precise_status(
    faults: ModuleType, server: ServerThread
) -> None:
    corpus = faults.hostile_corpus()
    assert len(corpus) >= 35
    abuser, _ = peers(server)
    with good_traffic(faults, server) as traffic:
        wrong = faults.try_hostile(abuser, corpus)
    assert wrong == []
    assert traffic.sent > 0 and traffic.lost == []
    settled(server)


def test_misbehaving_clients_cost_the_server_nothing(
    faults: ModuleType, server: ServerThread
) -> None:
    abuser, _ = peers(server)
    with good_traffic(faults, server) as traffic:
        codes = faults.misbehave(abuser, solid_png(COLOURS[2]))
    assert sum(codes["cancelled calls"].values()) == 500
    assert sum(codes["cancelled streams"].values()) == 50
    assert codes["1 ms deadlines"] == {"DEADLINE_EXCEEDED": 100}
    assert codes["vanishing clients"] == {"killed": 4}
    assert not any("INTERNAL" in outcome for outcome in codes.values())
    assert traffic.sent > 0 and traffic.lost == []
    settled(server)


def test_a_flood_at_ten_times_capacity_is_refused_and_costs_others_nothing(
    faults: ModuleType,
) -> None:
    with serve(delay_s=0.02, max_batch_size=1, inference_workers=1) as running:
        abuser, _ = peers(running)
        image = solid_png(COLOURS[0])
        capacity = faults.capacity(abuser, image, seconds=2)
        with good_traffic(faults, running, rate=3) as traffic:
            codes = faults.flood(abuser, image, rate=10 * capacity, seconds=2)
        assert codes["RESOURCE_EXHAUSTED"] > codes.get("OK", 0)
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}
        assert traffic.sent > 0 and traffic.lost == []
        settled(running)


def test_a_soak_answers_everything_and_memory_stays_flat(
    faults: ModuleType, server: ServerThread
) -> None:
    abuser, _ = peers(server)
    images = [solid_png(colour, size=64 + 8 * index) for index, colour in enumerate(COLOURS)]
    process = psutil.Process()
    with good_traffic(faults, server) as traffic:
        soak = faults.soak(abuser, images, requests=2000, rss=lambda: process.memory_info().rss)
    assert soak.codes == {"OK": 2000}
    assert soak.growth < faults.RSS_GROWTH_LIMIT, soak.rss
    assert traffic.lost == []
    settled(server)


def test_a_rolling_restart_under_load_loses_no_request(faults: ModuleType) -> None:
    settings = {"drain_delay": 0.5, "grace_period": 5}
    replicas = [ServerThread([colour_model()], server=settings).__enter__() for _ in range(3)]
    ports = [replica.server.grpc.port for replica in replicas]

    def restart(index: int) -> None:
        replicas[index].__exit__(None, None, None)  # SIGTERM's path: drain delay, then drain
        replicas[index] = ServerThread(
            [colour_model()], server={**settings, "port": ports[index]}
        ).__enter__()

    try:
        result = faults.rolling_restart(
            [f"127.0.0.1:{port}" for port in ports],
            restart,
            solid_png(COLOURS[1]),
            settle_s=2.0,
        )
    finally:
        for replica in replicas:
            replica.__exit__(None, None, None)
    assert result.restarts == 3
    assert set(result.codes) == {"OK"}, result.errors
    assert result.codes["OK"] > 50
