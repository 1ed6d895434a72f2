"""Tokens and tenants against a real server: who may call, which models, what stays open,
and what one tenant can learn of another."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from certificates import Pki
from fakes import colour_model, solid_png
from recognizer.client import Client, Credentials
from recognizer.config.schema import SecuritySettings
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import ServerThread, error_details, error_reason

SHOP = "q9Xc1kF0b7WvN2yH4tLm8a"
VISION = "Zt8MvA3pQ6rJ1uE5sKx0bw"
LATE = "L4t3c0m3rT0k3nAbCdEfGh"
TOKENS = f"shop:{SHOP}\nvision:{VISION}  blues\n"
RED, BLUE = solid_png((200, 0, 0)), solid_png((0, 0, 200))


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(TOKENS, encoding="utf-8")
    return path


@pytest.fixture
def running(pki: Pki, tokens_file: Path) -> Iterator[ServerThread]:
    """TLS and tokens, two models (the first the default), the cache on, metrics served."""
    security = SecuritySettings(
        tls_cert=pki.server[0], tls_key=pki.server[1], tokens_file=tokens_file
    )
    models = [colour_model("colours"), colour_model("blues")]
    with ServerThread(models, security=security, cache_entries=16, metrics_port=0) as server:
        yield server


def connect(server: ServerThread, pki: Pki, token: str | None = None) -> Client:
    return Client(server.address, credentials=Credentials(ca=pki.ca, token=token), timeout=10)


def failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll: the tokens file is looked at once a second, and this machine is busy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def succeeds(client: Client) -> bool:
    try:
        client.classify(RED)
    except grpc.RpcError:
        return False
    return True


def test_a_missing_wrong_or_revoked_token_is_unauthenticated(
    running: ServerThread, pki: Pki, tokens_file: Path
) -> None:
    with connect(running, pki) as anonymous:
        error = failure(lambda: anonymous.classify(RED))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(error) == "CREDENTIALS_MISSING"
        assert "authorization: Bearer TOKEN" in error.details()
        assert error_reason(failure(anonymous.list_models)) == "CREDENTIALS_MISSING"
    with connect(running, pki, "q9Xc1kF0b7WvN2yH4tLm8b") as wrong:
        error = failure(lambda: wrong.classify(RED))
        assert (error.code(), error_reason(error)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_INVALID",
        )
    with connect(running, pki, SHOP) as shop:
        assert shop.classify(RED, language="en").labels[0].label == "red"
        tokens_file.write_text(f"vision:{VISION}  blues\n", encoding="utf-8")  # revoked
        assert eventually(lambda: not succeeds(shop))
        error = failure(lambda: shop.classify(RED))
        assert (error.code(), error_reason(error)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_INVALID",
        )


def test_a_revoked_token_ends_its_open_stream(
    running: ServerThread, pki: Pki, tokens_file: Path
) -> None:
    """The stream sends a frame, then waits: removing its token's line ends it."""
    credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    release = threading.Event()

    def one_then_wait() -> Iterator[pb.ClassifyRequest]:
        yield pb.ClassifyRequest(image=BLUE, model="blues")
        release.wait(60)

    with grpc.secure_channel(running.address, credentials) as channel:
        answers = pb_grpc.RecognizerStub(channel).ClassifyStream(
            one_then_wait(), metadata=[("authorization", f"Bearer {VISION}")], timeout=60
        )
        try:
            assert next(answers).labels[0].class_id == 2
            tokens_file.write_text(f"shop:{SHOP}\n", encoding="utf-8")  # vision revoked
            ended = failure(lambda: next(answers))
        finally:
            release.set()
    assert (ended.code(), error_reason(ended)) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    assert eventually(lambda: running.engine.open_streams == 0)


def test_a_token_added_to_the_file_works_without_a_restart(
    running: ServerThread, pki: Pki, tokens_file: Path
) -> None:
    with connect(running, pki, LATE) as late:
        assert error_reason(failure(lambda: late.classify(RED))) == "TOKEN_INVALID"
        with tokens_file.open("a", encoding="utf-8") as file:
            file.write(f"newcomer:{LATE}\n")
        assert eventually(lambda: succeeds(late))


def test_a_tenant_off_its_model_list_is_permission_denied(running: ServerThread, pki: Pki) -> None:
    with connect(running, pki, VISION) as vision:
        for model in ("colours", ""):  # "" is the default model, colours
            error = failure(lambda model=model: vision.classify(RED, model=model))  # type: ignore[misc]
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(error) == "MODEL_NOT_ALLOWED"
            assert (
                "tenant 'vision' may not use model 'colours'; it may use: blues" in error.details()
            )
            (resource,) = error_details(error, error_details_pb2.ResourceInfo)
            assert (resource.resource_type, resource.resource_name) == ("model", "colours")
        assert vision.classify(BLUE, model="blues").labels[0].class_id == 2
        assert [model.name for model in vision.list_models().models] == ["blues"]
        missing = failure(lambda: vision.classify(RED, model="nothing"))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        assert missing.details().endswith("served models: blues")  # not the others'

        frames = [
            pb.ClassifyRequest(image=RED, model="colours", request_id="1"),
            pb.ClassifyRequest(image=BLUE, model="blues", request_id="2"),
        ]
        first, second = vision.classify_stream(frames)
        assert first.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert second.labels[0].class_id == 2  # the stream went on
    with connect(running, pki, SHOP) as shop:
        assert [model.name for model in shop.list_models().models] == ["colours", "blues"]


def test_health_is_open_by_default_and_closed_on_request(pki: Pki, tokens_file: Path) -> None:
    base = SecuritySettings(tls_cert=pki.server[0], tls_key=pki.server[1], tokens_file=tokens_file)
    with (
        ServerThread([colour_model()], security=base) as running,
        connect(running, pki) as anonymous,
    ):
        assert anonymous.health() == "SERVING"
        assert anonymous.health("recognizer.v1.Recognizer") == "SERVING"
    closed = base.model_copy(update={"public_health": False})
    with ServerThread([colour_model()], security=closed) as running:
        with connect(running, pki) as anonymous:
            error = failure(anonymous.health)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        with connect(running, pki, SHOP) as shop:
            assert shop.health() == "SERVING"


def test_health_names_a_model_only_to_a_tenant_that_may_use_it(
    running: ServerThread, pki: Pki
) -> None:
    """Without a token, a served model's health is as unknown as a name never served."""
    with (
        connect(running, pki) as anonymous,
        connect(running, pki, SHOP) as shop,
        connect(running, pki, VISION) as vision,
        connect(running, pki, "W" * 22) as wrong,
    ):
        for client in (anonymous, wrong, vision):
            assert failure(partial(client.health, "colours")).code() == grpc.StatusCode.NOT_FOUND
        assert failure(lambda: anonymous.health("blues")).code() == grpc.StatusCode.NOT_FOUND
        assert failure(lambda: shop.health("nothing")).code() == grpc.StatusCode.NOT_FOUND
        assert shop.health("colours") == shop.health("blues") == vision.health("blues") == "SERVING"
        assert wrong.health() == "SERVING"  # a wrong token on an open method: anonymous

        channel = grpc.secure_channel(
            running.address, grpc.ssl_channel_credentials(pki.ca.read_bytes())
        )
        with channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="colours"), timeout=10
            )
            first = next(watch)
            watch.cancel()
        assert first.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def test_tenants_do_not_see_each_others_cache_hits(running: ServerThread, pki: Pki) -> None:
    image = solid_png((0, 0, 190))
    with connect(running, pki, SHOP) as shop, connect(running, pki, VISION) as vision:
        assert not shop.classify(image, model="blues").timing.cache_hit
        assert shop.classify(image, model="blues").timing.cache_hit
        assert not vision.classify(image, model="blues").timing.cache_hit
        assert vision.classify(image, model="blues").timing.cache_hit


def test_metrics_label_calls_by_tenant_and_count_refusals(running: ServerThread, pki: Pki) -> None:
    with connect(running, pki, SHOP) as shop, connect(running, pki, VISION) as vision:
        shop.classify(RED)
        vision.classify(BLUE, model="blues")
        failure(lambda: vision.classify(RED))
    with connect(running, pki) as anonymous:
        failure(lambda: anonymous.classify(RED))
    url = f"http://127.0.0.1:{running.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.read().decode())
            for sample in family.samples
        }
    requests = "recognizer_requests_total"
    grpc = ("transport", "grpc")
    shop_ok = (("code", "OK"), ("model", "colours"), ("tenant", "shop"), grpc)
    assert samples[(requests, shop_ok)] == 1
    assert (
        samples[(requests, (("code", "OK"), ("model", "blues"), ("tenant", "vision"), grpc))] == 1
    )
    denied = (("code", "PERMISSION_DENIED"), ("model", "colours"), ("tenant", "vision"), grpc)
    assert samples[(requests, denied)] == 1
    refusals = ("recognizer_unauthenticated_total", (("reason", "CREDENTIALS_MISSING"),))
    assert samples[refusals] == 1


def test_a_client_certificate_names_its_tenant(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text(f"shop:{SHOP}\nacme:  blues\n", encoding="utf-8")
    security = SecuritySettings(
        tls_cert=pki.server[0],
        tls_key=pki.server[1],
        tls_client_ca=pki.ca,
        tokens_file=tmp_path / "tokens",
        tenant_from_cert=True,
    )
    models = [colour_model("colours"), colour_model("blues")]
    with ServerThread(models, security=security) as running:
        acme = Credentials(ca=pki.ca, cert=pki.client[0], key=pki.client[1])
        with Client(running.address, credentials=acme) as client:
            assert [model.name for model in client.list_models().models] == ["blues"]
            assert client.classify(BLUE, model="blues").labels[0].class_id == 2
            error = failure(lambda: client.classify(RED))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        nobody = pki.authority.issue("nobody").write(tmp_path, "nobody")
        unknown = Credentials(ca=pki.ca, cert=nobody[0], key=nobody[1])
        with Client(running.address, credentials=unknown) as client:
            assert error_reason(failure(lambda: client.classify(RED))) == "CERTIFICATE_UNKNOWN"
            with_token = Credentials(ca=pki.ca, cert=nobody[0], key=nobody[1], token=SHOP)
        with Client(running.address, credentials=with_token) as client:
            assert client.classify(RED).labels  # a token names the tenant instead


def test_a_token_goes_in_plaintext_only_to_this_machine(tokens_file: Path) -> None:
    security = SecuritySettings(tokens_file=tokens_file)
    with ServerThread([colour_model()], security=security) as running:
        with Client(running.address, credentials=Credentials(token=SHOP)) as client:
            assert client.classify(RED).labels
        with Client(running.address) as client:
            assert error_reason(failure(lambda: client.classify(RED))) == "CREDENTIALS_MISSING"
    with pytest.raises(ValueError, match="a token goes only over TLS"):
        Client("10.1.2.3:50051", credentials=Credentials(token=SHOP))


def test_a_cancelled_stream_leaves_nothing_behind_with_auth_on(
    running: ServerThread, pki: Pki
) -> None:
    def frames() -> Iterator[pb.ClassifyRequest]:
        for index in range(1000):
            time.sleep(0.002)
            yield pb.ClassifyRequest(image=RED, request_id=str(index))

    with connect(running, pki, SHOP) as shop:
        call = shop.classify_stream(frames())
        next(call)
        call.cancel()  # type: ignore[attr-defined]
    assert eventually(lambda: running.engine.open_streams == 0 and not running.engine.pending())
