"""Connection management on the real server: keepalive finds vanished clients, idle and old
connections are sent away without failing calls, streams and calls are bounded, and a
stream must send its first frame in time."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2

from fakes import ColourNet, colour_model, solid_png
from recognizer.client import error_status
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import ServerThread

BLUE = pb.ClassifyRequest(image=solid_png((0, 0, 200)), top_k=1)


class FreezingProxy:
    """A TCP proxy on loopback that can stop passing bytes while keeping both sockets open:
    to the server, its client has vanished without closing anything (a pulled cable)."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.frozen = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target))
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            while self.frozen.is_set():
                time.sleep(0.05)  # hold the bytes: nothing reaches the other side
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def states_of(channel: grpc.Channel) -> list[grpc.ChannelConnectivity]:
    states: list[grpc.ChannelConnectivity] = []
    channel.subscribe(states.append, try_to_connect=True)
    return states


@pytest.fixture
def slow_server() -> Iterator[ServerThread]:
    with ServerThread(
        [colour_model(network=ColourNet(delay_s=0.2))],
        max_batch_size=1,
        inference_workers=1,
        server={"max_streams_per_connection": 2, "max_concurrent_rpcs": 6},
    ) as running:
        yield running


def test_keepalive_pings_find_a_client_that_vanished_and_free_its_stream() -> None:
    with ServerThread(
        [colour_model()], server={"keepalive_time": 0.3, "keepalive_timeout": 0.5}
    ) as running:
        proxy = FreezingProxy(running.server.grpc.port or 0)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{proxy.port}")
            requests: list[pb.ClassifyRequest] = [BLUE]
            release = threading.Event()

            def frames() -> Iterator[pb.ClassifyRequest]:
                yield from requests
                release.wait(30)  # then the client goes silent, the stream still open

            responses = pb_grpc.RecognizerStub(channel).ClassifyStream(frames())
            assert next(responses).labels[0].class_id == 2
            assert running.engine.open_streams == 1
            proxy.frozen.set()
            deadline = time.monotonic() + 10
            while running.engine.open_streams and time.monotonic() < deadline:
                time.sleep(0.05)
            assert running.engine.open_streams == 0  # the server gave up on the connection
            release.set()
            channel.close()
        finally:
            proxy.close()


@pytest.mark.parametrize("setting", ["max_connection_idle", "max_connection_age"])
def test_idle_and_old_connections_are_sent_away_without_failing_a_call(setting: str) -> None:
    with (
        ServerThread([colour_model()], server={setting: 0.5}) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        states = states_of(channel)
        stub = pb_grpc.RecognizerStub(channel)
        for _ in range(8 if setting == "max_connection_age" else 1):
            assert stub.Classify(BLUE).labels[0].class_id == 2  # calls across the GOAWAY
            time.sleep(0.2)
        time.sleep(1.0)
        ready = states.index(grpc.ChannelConnectivity.READY)
        assert grpc.ChannelConnectivity.IDLE in states[ready:], states  # the server said GOAWAY
        assert stub.Classify(BLUE).labels[0].class_id == 2  # and the next call reconnects


def test_a_stream_outlives_the_connection_age_when_there_is_no_grace_limit() -> None:
    with (
        ServerThread([colour_model()], server={"max_connection_age": 0.3}) as running,
        grpc.insecure_channel(running.address) as channel,
    ):

        def frames() -> Iterator[pb.ClassifyRequest]:
            for _ in range(6):
                time.sleep(0.2)
                yield BLUE

        responses = list(pb_grpc.RecognizerStub(channel).ClassifyStream(frames()))
        assert [r.labels[0].class_id for r in responses] == [2] * 6


def test_calls_beyond_the_streams_per_connection_wait_on_the_client(
    slow_server: ServerThread,
) -> None:
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, slow_server.engine.pending())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with grpc.insecure_channel(slow_server.address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        calls = [stub.Classify.future(BLUE) for _ in range(5)]
        assert [call.result(timeout=30).labels[0].class_id for call in calls] == [2] * 5
    done.set()
    sampler.join()
    assert peak <= 2


def test_calls_beyond_the_servers_limit_are_refused_by_grpc(slow_server: ServerThread) -> None:
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(slow_server.address, own_connection) for _ in range(5)]
    try:
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            stubs = [pb_grpc.RecognizerStub(channel) for channel in channels]
            calls = [pool.submit(stubs[i % 5].Classify, BLUE) for i in range(10)]
            outcomes = [call.exception() or call.result() for call in calls]
        refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
        assert refused and {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        answered = [o for o in outcomes if isinstance(o, pb.ClassifyResponse)]
        assert len(answered) >= 6
    finally:
        for channel in channels:
            channel.close()


def test_a_stream_that_sends_no_first_frame_is_ended_in_time() -> None:
    with (
        ServerThread([colour_model()], server={"first_frame_timeout": 0.3}) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        silent = threading.Event()

        def nothing() -> Iterator[pb.ClassifyRequest]:
            silent.wait(10)
            yield from ()

        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            list(pb_grpc.RecognizerStub(channel).ClassifyStream(nothing()))
        silent.set()
        assert time.monotonic() - started < 5
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        status = error_status(ended.value)
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        status.details[0].Unpack(info)
        assert info.reason == "FIRST_FRAME_TIMEOUT"
        assert running.engine.open_streams == 0
        assert pb_grpc.RecognizerStub(channel).Classify(BLUE).labels[0].class_id == 2
