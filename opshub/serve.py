"""``opshub serve``: run a hub until SIGINT or SIGTERM.

Once the hub listens it prints one line for people and, with ``--ready-file PATH``,
writes ``{"url", "http", "pid", "hub", "db"}`` there atomically (a temporary file
renamed into place) for programs; the file is removed when the hub stops, so a file
that exists names a hub that is up. Problems a user can cause (a bad key folder or
config file, a port in use, a database that cannot be opened) raise UsageError or
StoreError with one line to print.
"""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

from hub.app import RunningHub, serve
from hub.config import HubConfig, load_config_file
from opshub.identities import open_folder, roster
from opshub.loops import run
from opshub.webapp import write_ready
from protocol.errors import UsageError


def hub_config(args: argparse.Namespace) -> HubConfig:
    """The hub's settings from the command line and ``--config``. Raises UsageError."""
    folder = open_folder(args.keys, authority_key=False)
    store = getattr(args, "store", "") or ""
    if store and not all(u.strip().startswith("nats://") for u in store.split(",")):
        raise UsageError(f"--store {store!r}: give NATS server URLs, "
                         f"nats://HOST:PORT[,nats://HOST:PORT...]")
    config = HubConfig(host=args.host, port=args.port, db=args.db, store=store,
                       authorities=(folder.authority_public(),),
                       open_enrollment=args.open_enrollment, fanout=args.fanout)
    if args.config is not None:
        if not args.config.exists():
            raise UsageError(f"no config file {args.config}")
        try:
            config = load_config_file(args.config, config)
        except ValueError as exc:
            raise UsageError(f"{args.config}: {exc}") from None
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    config = hub_config(args)
    credentials = roster(open_folder(args.keys, authority_key=False))
    ready_file: Path | None = args.ready_file
    if ready_file is not None and not os.access(ready_file.parent, os.W_OK):
        raise UsageError(f"cannot write the ready file in {ready_file.parent}/: no such "
                         f"folder, or not writable")
    listening = False

    def ready(running: RunningHub) -> None:
        nonlocal listening
        listening = True
        if ready_file is not None:
            write_ready(ready_file, {"url": running.url, "http": running.http,
                                          "pid": os.getpid(), "hub": config.hub_id,
                                          "db": str(config.db)})
        print(f"opshub: hub {config.hub_id!r} listening on {running.http} "
              f"(WebSocket {running.url}), database {config.db}", flush=True)

    try:
        run(serve(config, credentials, ready=ready), args.loop)
    except OSError as exc:
        if listening:
            raise
        raise UsageError(f"cannot listen on {config.host}:{config.port}: {_why(exc)}"
                         ) from None
    finally:
        if ready_file is not None and listening:
            ready_file.unlink(missing_ok=True)
    print("opshub: stopped cleanly", flush=True)
    return 0


def _why(exc: OSError) -> str:
    """``address already in use`` rather than asyncio's long sentence around it."""
    if exc.errno is not None and exc.errno in errno.errorcode:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc)).lower()
