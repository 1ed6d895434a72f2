"""`recognizer stream SOURCE`: stream a video, a camera or a folder of images to a server.

Each answer is printed as it arrives, with the frame's end-to-end latency, then a
summary; a progress bar runs on stderr when that is a terminal. Ctrl-C stops sending
and waits for the answers to the frames already sent (a second Ctrl-C abandons them).
The exit status is 1 if a frame failed, the source broke off or the stream ended with
an error.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Iterator

import grpc
from google.rpc import code_pb2
from tqdm import tqdm

from recognizer.cli.arguments import add_server_argument, credentials, positive
from recognizer.client import AsyncClient, Credentials
from recognizer.client.payloads import RAW_FORMATS, to_request
from recognizer.client.sources import Source, SourceError, open_source
from recognizer.client.streaming import (
    REOPENS,
    FrameAnswer,
    OutgoingFrame,
    StreamSummary,
    stream_frames,
)
from recognizer.outcomes import FrameOutcome
from recognizer.terminal import pad
from recognizer.v1 import recognizer_pb2 as pb

_POLICIES = {"every": pb.STREAM_POLICY_EVERY_FRAME, "latest": pb.STREAM_POLICY_LATEST_FRAME}
_NAME_CELLS = 14
_LABEL_CELLS = 12


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `stream` with the `recognizer` command."""
    stream = commands.add_parser(
        "stream",
        help="stream a video, a camera or a folder of images through ClassifyStream",
        description="Stream a video, a camera or a folder of images to a server; print each"
        " frame's answer and latency, then a summary.",
    )
    stream.set_defaults(command=run_stream)
    add_server_argument(stream)
    stream.add_argument(
        "source",
        metavar="SOURCE",
        help="a video file, a camera device such as /dev/video0, or a folder of images",
    )
    stream.add_argument(
        "--fps",
        type=positive(float),
        help="frames per second to send (a camera: to capture); default: a video's own"
        " rate, a folder as fast as flow control allows",
    )
    stream.add_argument(
        "--raw", action="store_true", help="send raw pixels instead of encoded images"
    )
    stream.add_argument(
        "--raw-format",
        choices=RAW_FORMATS,
        help="pixel format of raw frames, implies --raw (default: auto, the decoder's"
        " I420 or NV12 if it gives those, else RGB8)",
    )
    stream.add_argument(
        "--policy",
        choices=tuple(_POLICIES),
        default="every",
        help="when the server falls behind: classify every frame (flow control slows the"
        " sender) or the latest (older frames are skipped) (default: every)",
    )
    stream.add_argument(
        "--max-frame-age-ms",
        type=positive(int),
        metavar="MS",
        help="with --policy latest: skip frames that waited longer than this on the server",
    )
    stream.add_argument(
        "--top-k", type=positive(int), default=1, metavar="K", help="labels per frame (default: 1)"
    )
    stream.add_argument("--language", default="zh", help="label language: zh or en (default: zh)")
    stream.add_argument("--model", default="", help="model name (default: the server's)")
    stream.add_argument(
        "--limit", type=positive(int), metavar="N", help="stop after this many frames"
    )
    stream.add_argument(
        "--reopens",
        type=int,
        default=REOPENS,
        metavar="N",
        help="open a stream that broke off (its replica drained or died) again, with the"
        f" frames it had not answered, at most N times in a row (default: {REOPENS})",
    )
    stream.add_argument(
        "--quiet", "-q", action="store_true", help="print only the summary, not each frame"
    )


def run_stream(args: argparse.Namespace) -> int:
    """Stream the source, print the answers and the summary; returns the exit status."""
    if args.max_frame_age_ms and args.policy != "latest":
        print("recognizer stream: --max-frame-age-ms needs --policy latest", file=sys.stderr)
        return 2
    if args.reopens < 0:
        print("recognizer stream: --reopens must be 0 or more", file=sys.stderr)
        return 2
    try:
        connection = credentials(args)
    except (OSError, ValueError) as error:
        print(f"recognizer stream: {error}", file=sys.stderr)
        return 2
    try:
        source = open_source(args.source, fps=args.fps, limit=args.limit)
    except SourceError as error:
        print(f"recognizer stream: {error}", file=sys.stderr)
        return 1
    try:
        with source:
            summary = asyncio.run(_stream(args, source, connection))
    except KeyboardInterrupt:
        print("recognizer stream: interrupted", file=sys.stderr)
        return 130
    print(_summary(summary))
    if summary.source_error is not None:
        print(f"recognizer stream: the source broke off: {summary.source_error}", file=sys.stderr)
    if summary.code != grpc.StatusCode.OK:
        print(f"recognizer stream: {summary.code.name}: {summary.details}", file=sys.stderr)
    return 0 if summary.ok else 1


async def _stream(
    args: argparse.Namespace, source: Source, connection: Credentials
) -> StreamSummary:
    options = pb.StreamOptions(
        policy=_POLICIES[args.policy], max_frame_age_ms=args.max_frame_age_ms or 0
    )
    display = _Display(total=source.total, quiet=args.quiet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)  # so that a second Ctrl-C aborts
        display.note("stopping: waiting for the answers to the frames sent (Ctrl-C to abort)")

    loop.add_signal_handler(signal.SIGINT, interrupted)
    try:
        async with AsyncClient(args.server, timeout=None, credentials=connection) as client:
            return await stream_frames(
                client,
                _requests(args, source),
                options=options,
                on_answer=display.show,
                stop=stop,
                reopens=args.reopens,
            )
    finally:
        display.close()


def _requests(args: argparse.Namespace, source: Source) -> Iterator[OutgoingFrame]:
    """The source's frames as requests; run by the session's worker thread."""
    raw_format = args.raw_format or ("auto" if args.raw else None)
    for frame in source.frames:
        request = to_request(
            frame, raw_format=raw_format, top_k=args.top_k, language=args.language, model=args.model
        )
        yield OutgoingFrame(request, frame.due, frame.name)


class _Display:
    """Per-frame lines on stdout, flushed so that they flow through pipes as they come, and
    a progress bar on stderr when that is a terminal (tqdm keeps the two apart)."""

    def __init__(self, *, total: int | None, quiet: bool) -> None:
        self._quiet = quiet
        self._progress = tqdm(total=total, unit="frame", disable=None, leave=False, file=sys.stderr)
        if not quiet:
            self._print(f"{'frame':>6}  {pad('source', _NAME_CELLS)}  {'latency':>10}  answer")

    def show(self, answer: FrameAnswer) -> None:
        if not self._quiet:
            self._print(_line(answer))
        self._progress.update()
        self._progress.set_postfix_str(f"{answer.latency_s * 1000:.0f} ms", refresh=False)

    def note(self, text: str) -> None:
        tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        self._progress.close()

    def _print(self, line: str) -> None:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


def _line(answer: FrameAnswer) -> str:
    response = answer.response
    match answer.outcome:
        case FrameOutcome.FAILED:
            code = code_pb2.Code.Name(response.error.code)
            text = f"failed: {code}: {response.error.message}"
        case FrameOutcome.SKIPPED:
            text = "skipped"
        case FrameOutcome.ANSWERED:
            text = "  ".join(
                f"{pad(label.label, _LABEL_CELLS)} {label.score:.4f}" for label in response.labels
            )
    latency = f"{answer.latency_s * 1000:.1f} ms"
    return f"{response.request_id:>6}  {pad(answer.name, _NAME_CELLS)}  {latency:>10}  {text}"


def _summary(summary: StreamSummary) -> str:
    frames = f"{summary.sent} sent, " + ", ".join(
        f"{summary.counts[outcome]} {outcome}" for outcome in FrameOutcome
    )
    if summary.unanswered:
        frames += f", {summary.unanswered} unanswered"
    frames += f" in {summary.elapsed_s:.2f} s ({summary.frames_per_s:.1f} frames/s)"
    percentiles = [(p, summary.latency_s(p)) for p in (50, 95, 99)]
    latency = "  ".join(f"p{p} {s * 1000:.1f} ms" for p, s in percentiles if s is not None)
    server = ", ".join(
        f"{summary.server_counts[o]} {o}" for o in FrameOutcome if o in summary.server_counts
    )
    lines = [
        f"frames   {frames}",
        f"latency  {latency or '-'}  (classified frames, from send to answer)",
        f"server   {server or 'no counts'}",
        f"status   {summary.code.name}"
        + (f": {summary.details}" if summary.details else "")
        + (f" (reopened {summary.reopened}x)" if summary.reopened else ""),
    ]
    return "\n".join(lines)
