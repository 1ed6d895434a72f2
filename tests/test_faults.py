"""The fault suite of benchmarks/faults.py, smaller, against real servers on loopback.

Good traffic runs throughout each phase from another peer address (::1, where the abuse
comes from 127.0.0.1), without retries: it must lose nothing (during the attacks on the
doors, every call answered within 5 s). Each phase also checks that nothing came back
INTERNAL and that the server still says SERVING.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import psutil
import pytest

from certificates import Pki
from fakes import ColourNet, colour_model, solid_png
from recognizer.config.schema import SecuritySettings
from support import BENCHMARKS, ServerThread, load_script, wait_until

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
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED", "REFUSED_STREAM"}
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


# Network attacks: a server with tokens and HTTP, limits scaled down to the tests' sizes.

GOOD = (("authorization", "Bearer G00dTenantT0kenAbCdEf12"),)
NETWORK_LIMITS = {
    "host": "localhost",
    "header_timeout": 1.0,
    "first_frame_timeout": 1.0,
    "stream_idle_timeout": 1.0,
    "max_connections": 64,
    "max_concurrent_rpcs": 64,
}


@pytest.fixture
def tokens_file(faults: ModuleType, tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    tokens = (faults.GOOD, faults.ABUSER, faults.REVOKED)
    path.write_text(
        "".join(f"{n}:{t}\n" for n, t in zip(("good", "abuser", "revoked"), tokens, strict=True))
    )
    return path


@pytest.fixture
def guarded(tokens_file: Path) -> Iterator[ServerThread]:
    security = SecuritySettings(tokens_file=tokens_file)
    with ServerThread(
        [colour_model()], http=True, security=security, server=NETWORK_LIMITS, max_batch_size=4
    ) as running:
        yield running


def good_tenant(faults: ModuleType, running: ServerThread) -> Any:
    """Good traffic from a tenant with a token, each call to be answered within 5 s."""
    _, good = peers(running)
    reference = faults.reference_answers(good, [solid_png(c) for c in COLOURS], GOOD)
    return faults.GoodTraffic(good, reference, rate=5.0, deadline=5.0, metadata=GOOD)


def doors(running: ServerThread) -> tuple[str, str]:
    """The gRPC port as the abuser dials it, and the HTTP port."""
    assert running.server.http is not None
    return f"127.0.0.1:{running.server.grpc.port}", f"127.0.0.1:{running.server.http.port}"


def test_attacks_on_the_connections_cost_good_callers_nothing(
    faults: ModuleType, guarded: ServerThread
) -> None:
    grpc_door, http_door = doors(guarded)
    with good_tenant(faults, guarded) as traffic:
        flooded = faults.header_flood(http_door, connections=2)
        slow = faults.slowloris(http_door, connections=50, seconds=10)
        idle = faults.idle_sockets([grpc_door, http_door], per_port=100, hold_s=2.0, fds=lambda: 0)
    assert set(flooded["ended"]) <= {"431", "reset", "closed"}
    assert flooded["most_bytes_sent"] < 16 << 20  # of 81 MiB
    assert slow["still_open"] == 0 and slow["held_longest_s"] <= 6
    assert all(refused >= 100 - 64 for refused in idle["refused_at_once"].values())
    assert faults.answers_on_a_new_connection(grpc_door, solid_png(COLOURS[0]), GOOD) == "OK"
    assert traffic.sent > 0 and traffic.lost == []
    settled(guarded)


def test_watches_and_idle_streams_cannot_hold_the_calls_of_good_callers(
    faults: ModuleType, guarded: ServerThread
) -> None:
    grpc_door, _ = doors(guarded)
    abuser = (("authorization", f"Bearer {faults.ABUSER}"),)
    with good_tenant(faults, guarded) as traffic:
        watches = faults.watch_flood(grpc_door, streams=128, hold_s=3.0)
        idle = faults.idle_streams(
            grpc_door, solid_png(COLOURS[1]), streams=10, wait_s=15, metadata=abuser
        )
    assert set(watches) <= {"held", "RESOURCE_EXHAUSTED"} and watches["RESOURCE_EXHAUSTED"] >= 64
    assert idle["ended"] == {"DEADLINE_EXCEEDED STREAM_IDLE": 10}
    assert traffic.sent > 0 and traffic.lost == []
    settled(guarded)


UNAUTHENTICATED = """
import json, sys, psutil
sys.path.insert(0, sys.argv[1])
import faults
server = psutil.Process(int(sys.argv[3]))
rss = lambda: server.memory_info().rss
print(json.dumps(faults.unauthenticated_messages(sys.argv[2], calls=8, size=8 << 20, rss=rss)))
"""


def unauthenticated_from_another_process(target: str) -> dict[str, Any]:
    """The phase run by a client process of its own, so that the resident memory it measures,
    this process's, is the server's alone."""
    child = subprocess.run(
        [sys.executable, "-c", UNAUTHENTICATED, str(BENCHMARKS), target, str(os.getpid())],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(child.stdout)
    return result


def test_unauthenticated_and_undecodable_messages_cost_nothing(
    faults: ModuleType, guarded: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    grpc_door, http_door = doors(guarded)
    abuser = (("authorization", f"Bearer {faults.ABUSER}"),)
    with good_tenant(faults, guarded) as traffic, caplog.at_level(logging.ERROR):
        refused = unauthenticated_from_another_process(grpc_door)
        undecodable = faults.undecodable(grpc_door, http_door, calls=20, metadata=abuser)
    assert refused["codes"] == {"UNAUTHENTICATED": 8}
    assert refused["rss_after"] - refused["rss_before"] < faults.RSS_GROWTH_LIMIT
    assert undecodable == {
        "grpc": {"INVALID_ARGUMENT INVALID_REQUEST": 20},
        "http": {"400 INVALID_REQUEST": 20},
    }
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert traffic.sent > 0 and traffic.lost == []
    settled(guarded)


def test_costly_jpegs_are_refused_or_given_up_and_cost_good_callers_nothing(
    faults: ModuleType, guarded: ServerThread
) -> None:
    grpc_door, _ = doors(guarded)
    abuser = (("authorization", f"Bearer {faults.ABUSER}"),)
    jpegs = faults.hostile_jpegs(4000)
    with good_tenant(faults, guarded) as traffic:
        codes = faults.costly_decodes(grpc_door, jpegs, copies=2, deadline_s=0.2, metadata=abuser)
    assert codes["scan repeated"] == {"INVALID_ARGUMENT IMAGE_CORRUPT": 2}
    assert codes["2,081 scans"] == {"INVALID_ARGUMENT IMAGE_TOO_COMPLEX": 2}
    assert all(code.startswith("DEADLINE_EXCEEDED") for code in codes["68 scans"])
    assert traffic.sent > 0 and traffic.lost == []
    wait_until(lambda: guarded.engine.pipeline.budget.used == 0, timeout=10)  # decoding stopped
    settled(guarded)


def test_revoked_tokens_idle_websockets_and_what_anonymous_callers_learn(
    faults: ModuleType, guarded: ServerThread, tokens_file: Path
) -> None:
    grpc_door, http_door = doors(guarded)
    abuser = (("authorization", f"Bearer {faults.ABUSER}"),)
    red = solid_png(COLOURS[0])
    with good_tenant(faults, guarded) as traffic:
        revoked = faults.revoked_token(grpc_door, http_door, tokens_file, red, token=faults.REVOKED)
        websockets = faults.websocket_flood(http_door, count=20, wait_s=15, token=faults.ABUSER)
        seen = faults.anonymous_view(grpc_door, http_door, "colours")
        echoed = faults.echoed_request_ids(grpc_door, http_door, red, metadata=abuser)
    assert revoked["grpc"] == "UNAUTHENTICATED TOKEN_INVALID"
    assert revoked["websocket"] == "1008 TOKEN_INVALID"
    assert websockets["ended"] == {"1008 FIRST_FRAME_TIMEOUT": 20}
    assert seen == {
        "health": "SERVING",
        "model_check": "NOT_FOUND",
        "model_watch": "SERVICE_UNKNOWN",
        "readyz": {"status": "SERVING"},
    }
    assert echoed == {"grpc": 256, "http": 256}
    assert traffic.sent > 0 and traffic.lost == []
    settled(guarded)


def test_no_tls_session_outlives_a_rotated_client_ca(
    faults: ModuleType, pki: Pki, tmp_path: Path
) -> None:
    client_ca = tmp_path / "client-ca.pem"
    shutil.copy(pki.ca, client_ca)
    security = SecuritySettings(
        tls_cert=pki.server[0], tls_key=pki.server[1], tls_client_ca=client_ca
    )
    with ServerThread([colour_model()], http=True, security=security) as running:
        assert running.server.http is not None
        credentials = grpc.ssl_channel_credentials(
            pki.ca.read_bytes(), pki.client[1].read_bytes(), pki.client[0].read_bytes()
        )
        target = f"localhost:{running.server.grpc.port}"
        reference = faults.reference_answers(
            target, [solid_png(c) for c in COLOURS], credentials=credentials
        )
        with faults.GoodTraffic(
            target, reference, rate=5.0, deadline=5.0, credentials=credentials
        ) as traffic:
            resumed = faults.tls_resumption(
                f"127.0.0.1:{running.server.http.port}",
                pki.ca,
                pki.client,
                lambda: shutil.copy(pki.other_ca, client_ca),
            )
    assert resumed["TLSv1.2 resumed before"] and not resumed["TLSv1.3 resumed before"]
    assert resumed["TLSv1.2 after rotation"].startswith("refused")
    assert resumed["TLSv1.3 after rotation"].startswith("refused")
    assert traffic.sent > 0 and traffic.lost == []
