"""Prepare models into the cache in a process of its own: `recognizer serve` runs it on a
cold cache, so that PyTorch, which exporting a model needs, is never loaded in the
serving process (whose memory it would hold for good: BENCHMARKS.md, Footprint).

    python -m recognizer.cli.prepare < job.pickle

The job is a prepared.Preparation, pickled by the server that starts this process. Exit
status 0 when every model is in the cache; on a failure the error is logged and the
status is 1, and the server, loading the model itself, reports the same error as it
would without this step.
"""

from __future__ import annotations

import logging
import pickle
import sys

from recognizer.cli.serve import configure_logging
from recognizer.engine.backends.prepared import Preparation, load_backend

logger = logging.getLogger("recognizer")


def main() -> int:
    job = pickle.load(sys.stdin.buffer)
    assert isinstance(job, Preparation)
    configure_logging(job.log_level)
    try:
        for model in job.models:
            load_backend(
                model,
                job.engine,
                device=job.device,
                workers=job.workers,
                threads_per_worker=job.threads_per_worker,
                allow_code=job.allow_code,
            )
    except Exception:
        logger.exception("preparing the models in a child process failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
