"""Build recognizer's image with podman, on any machine or on one without a registry.

    python deploy/image/build.py                      # podman build -t recognizer .
    python deploy/image/build.py --local --tag recognizer:test --target cpu

`--local` is for a machine that reaches package indexes but no container registry, as
this project's build machines: the base is a minimal Debian bookworm with Python 3.11
made here by mmdebstrap from Debian's packages and imported into podman (once; kept
as localhost/recognizer-base:bookworm), podman runs runc through deploy/image/
containers.conf, and pip in the build gets this machine's pip configuration: its
indexes, find-links and constraints as build arguments (local directories mounted
read-only at the same paths) and its CA bundle as the secret `pip-cert`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
LOCAL_BASE = "localhost/recognizer-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# pip's settings passed on to the build, by the name pip gives them in `pip config list`.
PIP_SETTINGS = {
    "index-url": "PIP_INDEX_URL",
    "extra-index-url": "PIP_EXTRA_INDEX_URL",
    "find-links": "PIP_FIND_LINKS",
    "constraint": "PIP_CONSTRAINT",
}
# Where `pip config list` says a value comes from, weakest first: a config file's
# [global] section, its [install] section, then a PIP_* environment variable.
PIP_SCOPES = ("global", "install", ":env:")
# Limits a container may not exceed: runc cannot raise a limit above the caller's hard one.
NOFILE_LIMIT = 65536
NPROC_LIMIT = 4096


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="recognizer", help="image name (default: recognizer)")
    parser.add_argument("--target", default="cpu", choices=("cpu", "gpu"), help="default: cpu")
    parser.add_argument(
        "--local",
        action="store_true",
        help="a local Debian base, runc, and this machine's pip configuration",
    )
    parser.add_argument(
        "--build-arg", action="append", default=[], metavar="NAME=VALUE", help="repeatable"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.local:
        os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
        ensure_local_base()
    command = build_command(args.tag, args.target, args.build_arg, local=args.local)
    print("+", shlex.join(command), file=sys.stderr)
    status = subprocess.run(command, cwd=ROOT, check=False).returncode
    print(f"built {args.tag} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return status


def build_command(tag: str, target: str, build_args: Sequence[str], *, local: bool) -> list[str]:
    """The `podman build` command line."""
    command = ["podman", "build", "--format", "docker", "--tag", tag, "--target", target]
    if local:
        command += ["--build-arg", f"BASE={LOCAL_BASE}", *ulimit_flags()]
        settings = pip_settings()
        cert = settings.pop("cert", None)
        for name, value in settings.items():
            command += ["--build-arg", f"{PIP_SETTINGS[name]}={value}"]
        for path in sorted(local_paths(settings)):
            command += ["--volume", f"{path}:{path}:ro"]
        if cert:
            command += ["--secret", f"id=pip-cert,src={cert}"]
    for build_arg in build_args:
        command += ["--build-arg", build_arg]
    return [*command, str(ROOT)]


def ulimit_flags() -> list[str]:
    """--ulimit flags no higher than this process's hard limits (runc refuses higher)."""
    flags = []
    for name, limit, cap in (
        ("nofile", resource.RLIMIT_NOFILE, NOFILE_LIMIT),
        ("nproc", resource.RLIMIT_NPROC, NPROC_LIMIT),
    ):
        hard = resource.getrlimit(limit)[1]
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


def pip_settings() -> dict[str, str]:
    """This machine's pip settings that a build needs, from `pip config list`."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, dict[str, str]] = {}
    for line in listed.splitlines():
        key, _, quoted = line.partition("=")
        scope, _, name = key.rpartition(".")
        if name in (*PIP_SETTINGS, "cert") and scope in PIP_SCOPES:
            found.setdefault(name, {})[scope] = shlex.split(quoted)[0] if quoted else ""
    return {
        name: next(scopes[scope] for scope in reversed(PIP_SCOPES) if scope in scopes)
        for name, scopes in found.items()
    }


def local_paths(settings: dict[str, str]) -> set[Path]:
    """The directories and files on this machine that the pip settings point at."""
    paths = set()
    for name, value in settings.items():
        for item in value.split():
            url = urlparse(item)
            if url.scheme == "file":
                location = Path(url.path)
                # An index's pages link to files beside it (../../files/...).
                paths.add(location.parent if name.endswith("index-url") else location)
            elif not url.scheme and Path(item).exists():
                paths.add(Path(item).resolve())
    return paths


def ensure_local_base() -> None:
    """Make the Debian base with mmdebstrap and import it, unless podman has it already."""
    exists = subprocess.run(["podman", "image", "exists", LOCAL_BASE], check=False)
    if exists.returncode == 0:
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        tarball = Path(scratch) / "base.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(tarball),
                DEBIAN_MIRROR,
            ],
            check=True,
        )
        subprocess.run(["podman", "import", str(tarball), LOCAL_BASE], check=True)
    print(f"made {LOCAL_BASE} in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
