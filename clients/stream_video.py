"""Stream a video file through ClassifyStream at its own frame rate and print each answer.

    python clients/stream_video.py clip.mp4 [--server 127.0.0.1:50051] [--language en]
        [--ca ca.pem] [--token TOKEN]     (TLS and a token: connection.py)

PyAV decodes the video, and each frame goes out as a JPEG when its timestamp comes
round. gRPC pulls the frames from the generator on a thread of its own while this
thread reads the answers, so sending and reading never wait for each other. The
latency printed runs from handing a frame to gRPC to reading its answer.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import connection
import grpc

from recognizer.v1 import recognizer_pb2, recognizer_pb2_grpc


def frames(
    video: Path, language: str, sent: dict[str, float]
) -> Iterator[recognizer_pb2.ClassifyRequest]:
    """A request per frame, yielded at the frame's time; `sent` records when each went."""
    with av.open(str(video)) as container:
        start, first = time.monotonic(), None
        for index, frame in enumerate(container.decode(video=0)):
            first = frame.time if first is None else first
            jpeg = io.BytesIO()
            frame.to_image().save(jpeg, "JPEG", quality=90)
            # Due times count from the start, so one late frame does not delay the rest.
            time.sleep(max(0.0, start + (frame.time - first) - time.monotonic()))
            sent[str(index)] = time.monotonic()
            yield recognizer_pb2.ClassifyRequest(
                image=jpeg.getvalue(), request_id=str(index), top_k=1, language=language
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    connection.add_arguments(parser)  # --server, --ca, --cert, --key, --server-name, --token
    parser.add_argument("--language", default="zh")
    args = parser.parse_args()
    sent: dict[str, float] = {}
    failed = 0
    with connection.open_channel(args) as channel:
        stub = recognizer_pb2_grpc.RecognizerStub(channel)
        try:
            for response in stub.ClassifyStream(frames(args.video, args.language, sent)):
                latency_ms = (time.monotonic() - sent.pop(response.request_id)) * 1000
                if response.HasField("error"):
                    failed += 1
                    answer = f"error {response.error.message}"
                else:
                    answer = f"{response.labels[0].label} ({response.labels[0].score:.2f})"
                print(f"frame {response.request_id}: {answer}, {latency_ms:.1f} ms")
        except grpc.RpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
