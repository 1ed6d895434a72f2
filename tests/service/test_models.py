"""Models changed while the server serves (service/models.py), through the admin calls over
gRPC and HTTP: real ONNX files loaded on the real backend, real servers, real channels."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fakes import solid_png
from onnx_files import colour_onnx
from recognizer.app import VersionLoader
from recognizer.client import Client
from recognizer.config.models import ModelConfig
from recognizer.config.schema import EngineSettings, SecuritySettings
from recognizer.engine.engine import Engine
from recognizer.engine.sizing import Cgroup
from recognizer.models.repository import versions_of
from recognizer.service.models import ModelManager
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import ServerThread, error_reason, wait_until

RED = solid_png((250, 10, 10))
SWAPPED = (1, 2, 0)  # class 0 reads green, 1 blue, 2 red: a red image is "blue"
LOADER = VersionLoader(EngineSettings())


class Configured:
    """The models a configuration names, as a test changes them (a config file read again)."""

    def __init__(self, *models: ModelConfig) -> None:
        self.models = list(models)

    def __call__(self) -> tuple[ModelConfig, ...]:
        return tuple(self.models)


def model(path: Path, name: str = "colours", **keys: str) -> ModelConfig:
    return ModelConfig.from_keys({"path": str(path), "name": name, **keys}, where="test")


@contextmanager
def serving(
    configured: Configured,
    *,
    security: SecuritySettings | None = None,
    cgroup: Cgroup | None = None,
    watch: bool = False,
) -> Iterator[ServerThread]:
    def manager(engine: Engine) -> ModelManager:
        return ModelManager(
            engine, configured(), load=LOADER, read_models=configured, timeout=5, cgroup=cgroup
        )

    versions = [(v, c) for config in configured() for v, c in versions_of(config).items()]
    with ServerThread(
        LOADER.load_all(versions),
        http=True,
        security=security or SecuritySettings(admin=True),
        manager=manager,
        max_batch_size=4,
        server={"watch": watch},
    ) as running:
        yield running


def classify(client: Client, **options: object) -> tuple[int, str]:
    response = client.classify(RED, language="en", **options)  # type: ignore[arg-type]
    return response.model_version, response.labels[0].label


def states(client: Client) -> list[tuple[str, int, str]]:
    return [
        (info.name, info.version, pb.ModelState.Name(info.state))
        for info in client.list_models().models
    ]


def test_a_reload_under_load_moves_traffic_to_the_new_version_and_loses_no_call(
    tmp_path: Path,
) -> None:
    path = colour_onnx(tmp_path / "colours")
    configured = Configured(model(path), model(colour_onnx(tmp_path / "old"), "old"))
    with serving(configured) as running, Client(running.address) as client:
        answers: list[tuple[float, int, str]] = []  # (sent at, version, label)
        errors: list[BaseException] = []
        streamed: list[int] = []
        stop = threading.Event()

        def unary() -> None:
            with Client(running.address) as caller:
                while not stop.is_set():
                    sent = time.monotonic()
                    try:
                        answers.append((sent, *classify(caller)))
                    except grpc.RpcError as error:
                        errors.append(error)

        def frames() -> Iterator[pb.ClassifyRequest]:
            while not stop.is_set():
                yield pb.ClassifyRequest(image=RED, language="en")
                time.sleep(0.01)

        def stream() -> None:
            with Client(running.address) as caller:
                try:
                    for response in caller.classify_stream(frames()):
                        assert not response.HasField("error"), response.error
                        streamed.append(response.model_version)
                except (grpc.RpcError, AssertionError) as error:
                    errors.append(error)

        threads = [threading.Thread(target=work) for work in (unary, unary, stream)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(answers) >= 20 and len(streamed) >= 5)
        first = weakref.ref(running.engine.runner("colours").backend)
        colour_onnx(tmp_path / "colours", order=SWAPPED)  # the file is replaced
        changes = client.reload_config().changes
        reloaded = time.monotonic()
        wait_until(lambda: sum(sent > reloaded for sent, _, _ in answers) >= 20)
        wait_until(lambda: streamed[-1] == 2)
        # A model added and another unloaded, under the same load.
        added = client.load_model("added", f"path={colour_onnx(tmp_path / 'added')}")
        assert classify(client, model="added") == (1, "red")
        assert client.unload_model("old").versions == []
        settled = len(answers)
        wait_until(lambda: len(answers) >= settled + 20)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

        assert [(c.name, c.kind, c.version) for c in changes] == [
            ("colours", pb.MODEL_CHANGE_KIND_RELOADED, 2)
        ]
        assert errors == []
        assert {(v, label) for _, v, label in answers} == {(1, "red"), (2, "blue")}
        assert all(v == 2 for sent, v, _ in answers if sent > reloaded)
        assert set(streamed) == {1, 2}  # one stream, answered by both versions in turn
        assert [v.state for v in added.versions] == [pb.MODEL_STATE_READY]
        assert states(client) == [  # version 1 freed
            ("colours", 2, "MODEL_STATE_READY"),
            ("added", 1, "MODEL_STATE_READY"),
        ]
        assert running.engine.models.get("colours", 1) is None
        gc.collect()
        assert first() is None  # the retired version's runtime is freed
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(running.address))
        for service, status in (("colours", "SERVING"), ("colours:2", "SERVING")):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status) == status


def test_a_reload_adds_and_unloads_models_as_the_config_now_says(tmp_path: Path) -> None:
    configured = Configured(
        model(colour_onnx(tmp_path / "colours")), model(colour_onnx(tmp_path / "old"), "old")
    )
    with serving(configured) as running, Client(running.address) as client:
        configured.models = [
            configured.models[0],
            model(colour_onnx(tmp_path / "new", order=SWAPPED), "new"),
        ]
        changes = client.reload_config().changes
        assert sorted((c.name, c.kind) for c in changes) == [
            ("new", pb.MODEL_CHANGE_KIND_LOADED),
            ("old", pb.MODEL_CHANGE_KIND_UNLOADED),
        ]
        assert classify(client, model="new") == (1, "blue")
        with pytest.raises(grpc.RpcError) as refused:
            classify(client, model="old")
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        assert client.reload_config().changes == []  # nothing changed since


def test_a_broken_new_version_leaves_the_old_one_serving(tmp_path: Path) -> None:
    path = colour_onnx(tmp_path / "colours")
    with serving(Configured(model(path))) as running, Client(running.address) as client:
        path.write_bytes(b"not an ONNX model")
        (change,) = client.reload_config().changes
        assert change.kind == pb.MODEL_CHANGE_KIND_FAILED and change.version == 2
        assert classify(client) == (1, "red")
        (failed, ready) = client.list_models().models  # newest first
        assert (ready.version, ready.state) == (1, pb.MODEL_STATE_READY)
        assert (failed.version, failed.state) == (2, pb.MODEL_STATE_FAILED)
        assert failed.state_reason == change.reason and change.reason
        with pytest.raises(grpc.RpcError) as refused:
            client.load_model("colours")
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(refused.value) == "MODEL_LOAD_FAILED"
        answer = httpx.post(f"{running.http_url}/v1/models/colours:load")
        assert answer.status_code == 400
        assert "what served before still does" in answer.json()["error"]["message"]
        assert classify(client) == (1, "red")


def test_models_are_loaded_and_unloaded_by_name_over_both_doors(tmp_path: Path) -> None:
    with (
        serving(Configured(model(colour_onnx(tmp_path / "colours")))) as running,
        Client(running.address) as client,
    ):
        source = f"path={colour_onnx(tmp_path / 'extra', order=SWAPPED)}"
        (loaded,) = client.load_model("extra", source).versions
        assert (loaded.name, loaded.version, loaded.state) == ("extra", 1, pb.MODEL_STATE_READY)
        assert loaded.backend and loaded.num_classes == 3
        assert classify(client, model="extra") == (1, "blue")
        answer = httpx.post(f"{running.http_url}/v1/models/extra:unload", json={})
        assert answer.status_code == 200 and answer.json()["versions"] == []
        with pytest.raises(grpc.RpcError) as gone:
            classify(client, model="extra")
        assert gone.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as default:
            client.unload_model("colours")
        assert default.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(default.value) == "DEFAULT_MODEL"
        answer = httpx.post(f"{running.http_url}/v1/models/nothing:unload")
        assert answer.status_code == 404


def test_a_repository_serves_the_versions_its_policy_keeps(tmp_path: Path) -> None:
    root = tmp_path / "colours"
    colour_onnx(root / "1")
    colour_onnx(root / "2", order=SWAPPED)
    configured = Configured(model(root, versions="latest:2"))
    with serving(configured) as running, Client(running.address) as client:
        assert classify(client) == (2, "blue")  # no version: the newest
        assert classify(client, model_version=1) == (1, "red")
        colour_onnx(root / "3")
        assert [c.version for c in client.reload_config().changes] == [3]
        assert states(client) == [
            ("colours", 3, "MODEL_STATE_READY"),
            ("colours", 2, "MODEL_STATE_READY"),
        ]
        assert classify(client) == (3, "red")
        with pytest.raises(grpc.RpcError) as retired:
            classify(client, model_version=1)
        assert retired.value.code() is grpc.StatusCode.NOT_FOUND
        # Triton's protocol names the same versions, through Triton's own client.
        triton = tritonclient.grpc.InferenceServerClient(running.address)
        assert triton.get_model_metadata("colours").versions == ["3", "2"]
        image = tritonclient.grpc.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[RED]], dtype=np.object_))
        wanted = [tritonclient.grpc.InferRequestedOutput("PROBABILITIES", class_count=1)]
        answer = triton.infer("colours", [image], model_version="2", outputs=wanted)
        assert answer.get_response().model_version == "2"
        assert answer.as_numpy("PROBABILITIES")[0][0].decode().endswith(":blue")
        assert not triton.is_model_ready("colours", model_version="1")
        triton.close()


def test_a_load_the_memory_cannot_hold_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    cgroup_root = tmp_path / "cgroup"
    cgroup_root.mkdir()
    (cgroup_root / "memory.max").write_text(str(200 << 20))
    (cgroup_root / "memory.current").write_text(str(190 << 20))
    path = colour_onnx(tmp_path / "colours")
    with (
        serving(Configured(model(path)), cgroup=Cgroup(cgroup_root, "0::/\n")) as running,
        Client(running.address) as client,
    ):
        with pytest.raises(grpc.RpcError) as refused:
            client.load_model("more", f"path={colour_onnx(tmp_path / 'more')}")
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(refused.value) == "NOT_ENOUGH_MEMORY"
        assert "may take 10 MiB more" in (refused.value.details() or "")
        source = {"source": f"path={tmp_path / 'more' / 'model.onnx'}"}
        answer = httpx.post(f"{running.http_url}/v1/models/more:load", json=source)
        assert answer.status_code == 507
        assert states(client) == [("colours", 1, "MODEL_STATE_READY")]
        assert classify(client) == (1, "red")


TOKENS = "shop:q9Xc1kF0b7WvN2yH4tLm8a\ndeploy:Vb7Kq2Ls9Xw4Mz1Nc8Rt5y admin=yes\n"


@pytest.mark.parametrize("auth", [False, True])
def test_admin_calls_without_the_right_are_refused_on_both_doors(
    tmp_path: Path, auth: bool
) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(TOKENS)
    # Auth off and no --admin: nobody may; auth on: only the admin=yes tenant may.
    security = SecuritySettings(tokens_file=tokens) if auth else SecuritySettings()
    path = colour_onnx(tmp_path / "colours")
    with serving(Configured(model(path)), security=security) as running:
        channel = grpc.insecure_channel(running.address)
        admin = pb_grpc.ModelAdminServiceStub(channel)
        shop = [("authorization", "Bearer q9Xc1kF0b7WvN2yH4tLm8a")] if auth else []
        with pytest.raises(grpc.RpcError) as refused:
            admin.ReloadConfig(pb.ReloadConfigRequest(), metadata=shop)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(refused.value) == "ADMIN_REQUIRED"
        headers = {"authorization": "Bearer q9Xc1kF0b7WvN2yH4tLm8a"} if auth else {}
        answer = httpx.post(f"{running.http_url}/v1/config:reload", headers=headers)
        assert answer.status_code == 403
        assert answer.json()["error"]["details"][0]["reason"] == "ADMIN_REQUIRED"
        if auth:
            deploy = [("authorization", "Bearer Vb7Kq2Ls9Xw4Mz1Nc8Rt5y")]
            assert admin.ReloadConfig(pb.ReloadConfigRequest(), metadata=deploy).changes == []
            answer = httpx.post(
                f"{running.http_url}/v1/config:reload",
                headers={"authorization": "Bearer Vb7Kq2Ls9Xw4Mz1Nc8Rt5y"},
            )
            assert answer.status_code == 200
        channel.close()


def test_a_change_outlives_a_caller_that_gives_up(tmp_path: Path) -> None:
    with (
        serving(Configured(model(colour_onnx(tmp_path / "colours")))) as running,
        Client(running.address) as client,
    ):
        admin = pb_grpc.ModelAdminServiceStub(grpc.insecure_channel(running.address))
        source = f"path={colour_onnx(tmp_path / 'late', order=SWAPPED)}"
        with pytest.raises(grpc.RpcError) as gone:
            admin.LoadModel(pb.LoadModelRequest(name="late", source=source), timeout=0.05)
        assert gone.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: ("late", 1, "MODEL_STATE_READY") in states(client))
        assert classify(client, model="late") == (1, "blue")


def test_watch_takes_admin_changes_as_they_are(tmp_path: Path) -> None:
    configured = Configured(model(colour_onnx(tmp_path / "colours")))
    with serving(configured, watch=True) as running, Client(running.address) as client:
        client.load_model("extra", f"path={colour_onnx(tmp_path / 'extra')}")
        time.sleep(2.5)  # two looks of the watcher, which must not undo the load
        assert ("extra", 1, "MODEL_STATE_READY") in states(client)


def test_a_file_replaced_under_its_version_number_is_not_answered_from_the_cache(
    tmp_path: Path,
) -> None:
    path = colour_onnx(tmp_path / "colours")
    with (
        serving(Configured(model(path, version="3"))) as running,
        Client(running.address) as client,
    ):
        assert classify(client) == (3, "red")
        colour_onnx(tmp_path / "colours", order=SWAPPED)
        (change,) = client.reload_config().changes
        assert (change.kind, change.version) == (pb.MODEL_CHANGE_KIND_RELOADED, 3)
        assert classify(client) == (3, "blue")  # the same image, the new file's answer


def test_a_new_default_that_fails_leaves_the_old_default_serving(tmp_path: Path) -> None:
    configured = Configured(model(colour_onnx(tmp_path / "colours")))
    with serving(configured) as running, Client(running.address) as client:
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"not a model")
        configured.models = [model(broken, "broken")]
        changes = {(c.name, c.kind) for c in client.reload_config().changes}
        assert changes == {
            ("broken", pb.MODEL_CHANGE_KIND_FAILED),
            ("colours", pb.MODEL_CHANGE_KIND_FAILED),  # kept: still the default
        }
        assert classify(client) == (1, "red")


@pytest.mark.parametrize(
    ("name", "source", "says"),
    [
        ("code", "format=torchscript,path=model.pt", "--allow-code-models"),
        ("a:2", "path=model.onnx", "has a ':'"),
        ("", "path=model.onnx,colour=red", "unknown key 'colour'"),
    ],
)
def test_a_source_that_cannot_be_served_is_an_invalid_argument(
    tmp_path: Path, name: str, source: str, says: str
) -> None:
    with (
        serving(Configured(model(colour_onnx(tmp_path / "colours")))) as running,
        Client(running.address) as client,
    ):
        with pytest.raises(grpc.RpcError) as refused:
            client.load_model(name, source)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert says in (refused.value.details() or "")
