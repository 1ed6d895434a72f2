"""Stream every image in a folder through ClassifyStream and print each frame's answer.

    python clients/stream_folder.py photos/ [--server 127.0.0.1:50051] [--language en]
        [--ca ca.pem] [--token TOKEN]     (TLS and a token: connection.py)

One stream carries all the frames; answers come back in the order sent, and a frame
that fails (a corrupt file, say) is answered with its own error while the rest go on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import connection

from recognizer.client.sources import IMAGE_SUFFIXES
from recognizer.v1 import recognizer_pb2, recognizer_pb2_grpc


def frames(folder: Path, language: str) -> Iterator[recognizer_pb2.ClassifyRequest]:
    images = (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for path in sorted(images):
        yield recognizer_pb2.ClassifyRequest(
            image=path.read_bytes(), request_id=path.name, top_k=1, language=language
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    connection.add_arguments(parser)  # --server, --ca, --cert, --key, --server-name, --token
    parser.add_argument("--language", default="zh")
    args = parser.parse_args()
    failed = 0
    with connection.open_channel(args) as channel:
        stub = recognizer_pb2_grpc.RecognizerStub(channel)
        for response in stub.ClassifyStream(frames(args.folder, args.language)):
            if response.HasField("error"):
                failed += 1
                print(f"{response.request_id}: error {response.error.message}")
            else:
                top = response.labels[0]
                print(f"{response.request_id}: {top.label} ({top.score:.2f})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
