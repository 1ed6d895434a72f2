"""The process's open-file limit, and how many connections each port may hold within it.

Every connection costs a file descriptor, and a process that has none left cannot accept
on any port: idle sockets on one port would lock every client out of the other. So at
start-up the soft limit is raised to the hard limit, as servers do (Go does it for every
program since 1.19; nginx has worker_rlimit_nofile), and each port's connection cap is
kept within an even share of it, less RESERVED_FILES for everything else the process
opens (about 25 when idle: models, event loops, pipes, the metrics port).
"""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger(__name__)

RESERVED_FILES = 256
UNLIMITED_FILES = 1 << 20  # what "unlimited" is raised to: Linux's default fs.nr_open


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = UNLIMITED_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as error:
            logger.warning("cannot raise the open-file limit from %d: %s", soft, error)
    return UNLIMITED_FILES if soft == resource.RLIM_INFINITY else soft


def connections_per_port(wanted: int, ports: int) -> int:
    """The connection cap for each of `ports` ports: `wanted`, or less where the open-file
    limit (raised first) cannot hold that many on every port."""
    limit = raise_open_file_limit()
    fits = max(1, (limit - RESERVED_FILES) // ports)
    if wanted > fits:
        logger.warning(
            "--max-connections %d does not fit the open-file limit of %d on %d port(s):"
            " each port keeps at most %d connections (raise the limit, ulimit -n, to keep more)",
            wanted,
            limit,
            ports,
            fits,
        )
    return min(wanted, fits)
