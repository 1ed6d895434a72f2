"""Prepare models into the cache in a process of its own: `recognizer serve` runs it on a
cold cache, so that PyTorch, which exporting a model needs, is never loaded in the
serving process (whose memory it would hold for good: BENCHMARKS.md, Footprint).

    python -m recognizer.cli.prepare < job.pickle

The job is a prepared.Preparation, pickled by the server that starts this process. Exit
status 0 when every model is in the cache; 2 when a model cannot be served (a
StartupError, left to the server to report: loading the model itself, it raises the
same); 1 after any other failure, which is logged with its traceback.
"""

from __future__ import annotations

import logging
import pickle
import sys

from recognizer.engine.backends.prepared import Preparation, load_backend
from recognizer.errors import StartupError
from recognizer.logs import configure_logging

logger = logging.getLogger("recognizer")
CANNOT_START = 2  # a model that cannot be served: a StartupError


def main() -> int:
    job = pickle.load(sys.stdin.buffer)
    assert isinstance(job, Preparation)
    configure_logging(job.log_level, job.log_format)
    try:
        for model in job.models:
            load_backend(model, job.engine, device=job.device, allow_code=job.allow_code)
    except StartupError:
        return CANNOT_START  # the server, loading the model itself, says why
    except Exception:
        logger.exception("preparing the models in a child process failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
