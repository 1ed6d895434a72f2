"""The load generator's loops against real servers: counts, schedules, streams, processes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.rpc import code_pb2, status_pb2

from fakes import ColourNet, colour_model, solid_png
from recognizer.bench import BenchError
from recognizer.bench.loadgen import Load
from recognizer.bench.processes import run_load
from recognizer.bench.workload import Workload, find_images
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import ServerThread


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread([colour_model()], max_batch_size=4) as running:
        yield running


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    folder = tmp_path_factory.mktemp("images")
    for name, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        (folder / f"{name}.png").write_bytes(solid_png(colour))
    return find_images([folder])


def a_load(target: str, images: tuple[str, ...], **shape: object) -> Load:
    return Load(target=target, workload=Workload(images=images), **shape)  # type: ignore[arg-type]


def test_a_closed_loop_measures_exactly_the_requests_asked_for(
    server: ServerThread, images: tuple[str, ...]
) -> None:
    results = run_load(a_load(server.address, images, concurrency=4, requests=60, warmup_s=0.2))
    assert results.codes == {"OK": 60}
    assert len(results.latencies_s) == 60 and 0 < min(results.latencies_s) < max(
        results.latencies_s
    )
    assert sum(results.batch_sizes.values()) == 60 and max(results.batch_sizes) <= 4
    assert len(results.usage) == 1 and results.usage[0].cpu_s > 0


def test_an_open_loop_keeps_its_schedule_and_leaves_out_the_warmup(
    server: ServerThread, images: tuple[str, ...]
) -> None:
    # Sends at 0, 10, 20 ... ms: 20 in the warm-up, then 50 measured (the bounds fall between).
    load = a_load(server.address, images, rate=100, warmup_s=0.195, duration_s=0.5)
    results = run_load(load)
    assert results.codes == {"OK": 50}
    assert results.last_done is not None
    assert 0.45 < results.last_done - results.measure_from < 2.0


def test_open_loop_latency_counts_queueing_when_the_server_falls_behind(
    images: tuple[str, ...],
) -> None:
    slow = colour_model(network=ColourNet(delay_s=0.05))  # at most 20 answers a second
    with ServerThread([slow], max_batch_size=1, inference_workers=1) as running:
        results = run_load(a_load(running.address, images, rate=40, duration_s=0.49))
    assert results.codes == {"OK": 20}
    # The 20th request, scheduled at 0.475 s, waits for the 19 before it: about 1 s in all.
    assert max(results.latencies_s) > 0.4


def test_streams_send_their_frames_on_schedule(
    server: ServerThread, images: tuple[str, ...]
) -> None:
    load = a_load(server.address, images, streams=2, fps=50, duration_s=0.395, policy="latest")
    results = run_load(load)
    assert results.codes == {"OK": 40}  # 2 streams x 20 frames, 10 ms apart
    assert len(results.latencies_s) == 40


def test_unpaced_streams_send_as_fast_as_they_are_answered(
    server: ServerThread, images: tuple[str, ...]
) -> None:
    results = run_load(a_load(server.address, images, streams=2, fps=0, requests=50))
    assert results.codes == {"OK": 50}


class ScriptedServicer(pb_grpc.RecognizerServicer):  # type: ignore[misc]
    """Answers stream frames in turn with a classification, a skip and an error; then fails.

    Unary calls are answered from the cache. Keeps every request it reads.
    """

    def __init__(self, fail_after: int) -> None:
        self.frames: list[pb.ClassifyRequest] = []
        self.fail_after = fail_after

    def Classify(self, request: pb.ClassifyRequest, context: object) -> pb.ClassifyResponse:
        return pb.ClassifyResponse(timing=pb.Timing(batch_size=1, cache_hit=True))

    def ClassifyStream(
        self, request_iterator: Iterator[pb.ClassifyRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ClassifyResponse]:
        for index, request in enumerate(request_iterator):
            self.frames.append(request)
            if index == self.fail_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
            if index % 3 == 0:
                yield pb.ClassifyResponse(timing=pb.Timing(batch_size=2))
            elif index % 3 == 1:
                yield pb.ClassifyResponse(skipped=True)
            else:
                yield pb.ClassifyResponse(
                    error=status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad frame")
                )


@pytest.fixture
def scripted() -> Iterator[tuple[str, ScriptedServicer]]:
    servicer = ScriptedServicer(fail_after=10)
    scripted_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_RecognizerServicer_to_server(servicer, scripted_server)
    port = scripted_server.add_insecure_port("127.0.0.1:0")
    scripted_server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        scripted_server.stop(grace=None)


def test_a_stream_sets_its_policy_on_the_first_frame_and_counts_each_kind_of_answer(
    scripted: tuple[str, ScriptedServicer], images: tuple[str, ...]
) -> None:
    target, servicer = scripted
    results = run_load(a_load(target, images, streams=1, fps=0, requests=30, policy="latest"))
    first, *rest = servicer.frames
    assert first.stream_options.policy == pb.STREAM_POLICY_LATEST_FRAME
    assert all(not frame.HasField("stream_options") for frame in rest)
    # Frames 0-9 answered (4 classified, 3 skipped, 3 failed), then the stream fails:
    # frame 10 and any others already sent fail with it.
    assert results.codes.pop("OK") == 7 and results.skipped == 3
    assert results.codes.pop("INVALID_ARGUMENT") == 3
    ((stream_code, unanswered),) = results.codes.items()
    # grpc.aio reports INTERNAL instead of the server's status when the stream ends while
    # the client is still writing (grpc/grpc#36066).
    assert stream_code in ("UNAVAILABLE", "INTERNAL") and unanswered >= 1
    assert len(results.latencies_s) == 4 and results.batch_sizes == {2: 4}


def test_cache_hits_are_counted(
    scripted: tuple[str, ScriptedServicer], images: tuple[str, ...]
) -> None:
    target, _ = scripted
    results = run_load(a_load(target, images, concurrency=2, requests=10))
    assert results.cache_hits == 10


def test_processes_share_the_load_and_their_results_merge(
    server: ServerThread, images: tuple[str, ...]
) -> None:
    load = a_load(server.address, images, concurrency=4, requests=41, warmup_s=0.1)
    results = run_load(load, processes=2)
    assert results.codes == {"OK": 41}
    assert len(results.latencies_s) == 41
    assert len(results.usage) == 2


def test_a_client_process_that_cannot_connect_is_reported(images: tuple[str, ...]) -> None:
    with pytest.raises(BenchError, match="cannot connect"):
        run_load(a_load("127.0.0.1:1", images, concurrency=2, requests=2), processes=2)


def test_a_load_is_shared_evenly_and_its_schedule_interleaved() -> None:
    open_shares = Load(target="t", workload=Workload(images=("x",)), rate=90, requests=10).split(3)
    assert [s.rate for s in open_shares] == [30.0, 30.0, 30.0]
    assert [s.phase_s for s in open_shares] == pytest.approx([0, 1 / 90, 2 / 90])
    assert [s.requests for s in open_shares] == [4, 3, 3]
    closed = Load(target="t", workload=Workload(images=("x",)), concurrency=5).split(2)
    assert [s.concurrency for s in closed] == [3, 2]
    streams = Load(target="t", workload=Workload(images=("x",)), streams=3, fps=10).split(2)
    assert [s.streams for s in streams] == [2, 1]
    assert [s.phase_s for s in streams] == pytest.approx([0, 2 / 30])
    assert streams[0].stream_spacing_s == pytest.approx(1 / 30)
    (alone,) = Load(target="t", workload=Workload(images=("x",)), streams=3, fps=10).split(1)
    assert alone.stream_spacing_s == pytest.approx(1 / 30)  # streams start staggered
    with pytest.raises(BenchError, match="3 processes cannot share 2"):
        Load(target="t", workload=Workload(images=("x",)), concurrency=2).split(3)
