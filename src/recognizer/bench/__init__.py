"""The load generator behind `recognizer bench` (its command line: cli/bench.py), for the
recognizer.v1 contract.

workload.py   the images, as encoded bytes or raw RGB8 frames, and the requests
loadgen.py    the client loops: closed, open (fixed schedule) and streams
processes.py  the load shared across client processes, with a progress bar
stats.py      percentiles, the report and the --json document
"""


class BenchError(Exception):
    """The load cannot be run (no images, no server); nothing was measured."""
