"""`recognizer serve`: load the models and serve them until SIGTERM or SIGINT; SIGHUP
reloads the models the configuration names.

Exit status: 0 after a clean drain; 2 when the configuration is wrong (a bad flag,
variable or config file value, named in the message); 1 when a valid configuration
cannot start (a model that does not load, a busy port); 3 when every model stopped
working for --unhealthy-exit seconds. After a drain the process exits at once, without
waiting for threads hung in a model call, once the spans still held are exported
(tracing.py, when the OTEL_* variables turn tracing on). A bug prints its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvloop

from recognizer import tracing
from recognizer.config.sources import add_serve_arguments, env, load_config
from recognizer.errors import ConfigError, StartupError
from recognizer.logs import configure_logging
from recognizer.security.policy import Security

logger = logging.getLogger("recognizer")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("serve", help="serve the models over gRPC")
    parser.set_defaults(command=run)
    add_serve_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Serve; returns only when the server cannot start (after a drain the process exits)."""
    try:
        config = load_config(vars(args), os.environ)
        configure_logging(config.log.log_level, config.log.log_format)
        # Certificates and tokens are read first: a bad file stops start-up in a moment,
        # before torch is imported and the models are loaded.
        security = Security.from_settings(config.security)
        if tracing.configure():  # in this process only: not in the child preparing models
            logger.info("tracing: spans exported over OTLP as the OTEL_* variables say")
        # Imported here so that only `serve` pays for importing torch.
        from recognizer.app import serve

        flags, environ = vars(args), dict(os.environ)
        config_file = flags.get("config") or environ.get(env("config"))
        # uvloop: the event loop costs about a quarter less CPU per request (BENCHMARKS.md).
        try:
            status = uvloop.run(
                serve(
                    config,
                    security,
                    # SIGHUP and --watch: the flags, variables and config file read again.
                    read_models=lambda: load_config(flags, environ).models,
                    config_file=Path(config_file) if config_file else None,
                )
            )
        finally:
            tracing.shutdown()  # the spans still held are exported before the exit
    except ConfigError as error:
        configure_logging("info")  # a no-op once configured
        logger.error("cannot start: %s", error)
        return 2
    except StartupError as error:
        logger.error("cannot start: %s", error)
        return 1
    # The server has drained and stopped: nothing is left to do, and threads of native
    # libraries (a model call that hangs, gRPC's, OpenVINO's) must not hold the exit up.
    sys.stdout.flush()
    logging.shutdown()
    os._exit(status)
