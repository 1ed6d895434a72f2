"""`recognizer models`: list a server's models, or load, unload and reload them live.

    recognizer models list                      every version and its state
    recognizer models load NAME [--source S]    load or reload NAME (S: --model flag text;
                                                default: as the server's config file says)
    recognizer models unload NAME [--version N] stop serving NAME, or one of its versions
    recognizer models reload                    the server reads its config file again

Changing models needs the admin right (docs/operating.md). Exit status 0 on success, 1
when the server refuses or cannot be reached (its status and message on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

import grpc

from recognizer.cli.arguments import add_server_argument, credentials, positive
from recognizer.client import Client
from recognizer.v1 import recognizer_pb2 as pb

TIMEOUT_S = 300.0  # a load prepares and warms the model before it answers


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("models", help="list, load, unload or reload a server's models")
    actions = parser.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every model version and its state")
    listing.set_defaults(command=list_models)
    load = actions.add_parser("load", help="load or reload a model")
    load.add_argument("name", help="the model's name")
    load.add_argument(
        "--source",
        default="",
        help="the model as --model gives it (key=value,...); default: the config file's",
    )
    load.set_defaults(command=load_model)
    unload = actions.add_parser("unload", help="stop serving a model or one of its versions")
    unload.add_argument("name", help="the model's name")
    unload.add_argument("--version", type=positive(int), default=0, help="one version only")
    unload.set_defaults(command=unload_model)
    reload = actions.add_parser("reload", help="have the server read its config file again")
    reload.set_defaults(command=reload_config)
    for action in (listing, load, unload, reload):
        add_server_argument(action)
        action.add_argument(
            "--timeout",
            type=positive(float),
            default=TIMEOUT_S,
            help=f"seconds to wait for the answer (default: {TIMEOUT_S:g})",
        )


def list_models(args: argparse.Namespace) -> int:
    return _call(args, lambda client: _print_versions(client.list_models().models))


def load_model(args: argparse.Namespace) -> int:
    return _call(
        args, lambda client: _print_versions(client.load_model(args.name, args.source).versions)
    )


def unload_model(args: argparse.Namespace) -> int:
    return _call(
        args,
        lambda client: _print_versions(client.unload_model(args.name, args.version).versions),
    )


def reload_config(args: argparse.Namespace) -> int:
    def reload(client: Client) -> None:
        changes = client.reload_config().changes
        for change in changes:
            kind = pb.ModelChangeKind.Name(change.kind).removeprefix("MODEL_CHANGE_KIND_")
            reason = f"  {change.reason}" if change.reason else ""
            print(f"{change.name}\t{change.version}\t{kind.lower()}{reason}")
        if not changes:
            print("nothing changed")

    return _call(args, reload)


def _call(args: argparse.Namespace, action: Callable[[Client], None]) -> int:
    try:
        connection = credentials(args)
    except (OSError, ValueError) as error:
        print(f"recognizer models: {error}", file=sys.stderr)
        return 1
    with Client(args.server, timeout=args.timeout, credentials=connection) as client:
        try:
            action(client)
        except grpc.RpcError as error:
            print(f"{args.server}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


def _print_versions(versions: Iterable[pb.ModelInfo]) -> None:
    """One line a version: name, version, state, backend and device, or why it is not ready."""
    for info in versions:
        state = pb.ModelState.Name(info.state).removeprefix("MODEL_STATE_").lower()
        where = f"{info.backend} on {info.device}" if info.backend else info.state_reason
        print(f"{info.name}\t{info.version}\t{state}\t{where}")
