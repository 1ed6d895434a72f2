"""`recognizer serve`: load the models and serve them until SIGTERM or SIGINT.

Exit status: 0 after a clean drain; 2 when the configuration is wrong (a bad flag,
variable or config file value, named in the message); 1 when a valid configuration
cannot start (a model that does not load, a busy port); 3 when every model stopped
working for --unhealthy-exit seconds (the process exits at once after draining, without
waiting for threads hung in a model call). A bug prints its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os

import uvloop

from recognizer.config.sources import add_serve_arguments, load_config
from recognizer.errors import ConfigError, StartupError
from recognizer.security.policy import Security

logger = logging.getLogger("recognizer")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("serve", help="serve the models over gRPC")
    parser.set_defaults(command=run)
    add_serve_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(vars(args), os.environ)
        configure_logging(config.log.log_level)
        # Certificates and tokens are read first: a bad file stops start-up in a moment,
        # before torch is imported and the models are loaded.
        security = Security.from_settings(config.security)
        # Imported here so that only `serve` pays for importing torch.
        from recognizer.app import serve

        # uvloop: the event loop costs about a quarter less CPU per request (BENCHMARKS.md).
        status = uvloop.run(serve(config, security))
        if status:
            logging.shutdown()
            os._exit(status)  # threads hung in native code must not hold the exit up
    except ConfigError as error:
        configure_logging("info")  # a no-op once configured
        logger.error("cannot start: %s", error)
        return 2
    except StartupError as error:
        logger.error("cannot start: %s", error)
        return 1
    return 0


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
