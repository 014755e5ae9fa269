"""``opshub serve``: run a hub until SIGINT or SIGTERM.

Once the hub listens it prints one line for people and, with ``--ready-file PATH``,
writes ``{"url", "http", "metrics", "pid", "hub", "db"}`` there atomically (a temporary
file renamed into place) for programs; the file is removed when the hub stops, so a file
that exists names a hub that is up. ``metrics`` is the base URL of the listener of
/healthz and /metrics (``--metrics-host``, ``--metrics-port``; plain http://). With
``--tls-cert`` and ``--tls-key`` the agents' URLs are wss:// and https://. Problems a user
can cause (a bad key folder, config file or TLS file, a port in use, a database that
cannot be opened) raise UsageError or StoreError with one line to print.
"""

from __future__ import annotations

import argparse
import errno
import os
import ssl
from pathlib import Path

from client.tls import tls_reason
from hub.app import RunningHub, serve
from hub.config import HubConfig, load_config_file
from hub.tls import server_context
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
    cert, key = tls_files(args)
    config = HubConfig(host=args.host, port=args.port, db=args.db, store=store,
                       tls_cert=cert, tls_key=key,
                       metrics_host=getattr(args, "metrics_host", "127.0.0.1"),
                       metrics_port=getattr(args, "metrics_port", None),
                       authorities=(folder.authority_public(),),
                       open_enrollment=args.open_enrollment, fanout=args.fanout,
                       audit_db=args.audit_db, audit_key=args.audit_key)
    if args.config is not None:
        if not args.config.exists():
            raise UsageError(f"no config file {args.config}")
        try:
            config = load_config_file(args.config, config)
        except ValueError as exc:
            raise UsageError(f"{args.config}: {exc}") from None
    return config


def tls_files(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """``--tls-cert`` and ``--tls-key``, both or neither, checked by loading them as the
    hub will. Raises UsageError naming the file and what is wrong with it."""
    cert: Path | None = getattr(args, "tls_cert", None)
    key: Path | None = getattr(args, "tls_key", None)
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together: the hub's certificate and "
                         "its private key (`opshub keys tls` makes both for a test setup)")
    if cert is None or key is None:
        return None, None
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    try:
        server_context(cert, key)
    except ssl.SSLError as exc:
        raise UsageError(f"--tls-cert {cert} --tls-key {key}: not a PEM certificate and its "
                         f"matching private key ({tls_reason(exc)})") from None
    except OSError as exc:
        raise UsageError(f"--tls-cert {cert} --tls-key {key}: "
                         f"{(exc.strerror or str(exc)).lower()}") from None
    return cert, key


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
                                     "metrics": running.metrics_http, "pid": os.getpid(),
                                     "hub": config.hub_id, "db": str(config.db)})
        tls = f", TLS certificate {config.tls_cert}" if running.tls else ""
        print(f"opshub: hub {config.hub_id!r} listening on {running.http} "
              f"(WebSocket {running.url}), metrics {running.metrics_http}/metrics, "
              f"database {config.db}{tls}", flush=True)

    try:
        run(serve(config, credentials, ready=ready), args.loop)
    except OSError as exc:
        if listening:
            raise
        raise UsageError(f"cannot listen on {_address(exc, config)}: {_why(exc)}") from None
    finally:
        if ready_file is not None and listening:
            ready_file.unlink(missing_ok=True)
    print("opshub: stopped cleanly", flush=True)
    return 0


def _address(exc: OSError, config: HubConfig) -> str:
    """Which of the two listeners failed: asyncio names the address it could not bind in
    its message; the metrics listener's, or else the agents'."""
    port = config.metrics_port
    if port is None:
        port = config.port + 1 if config.port else 0
    if port and f"({config.metrics_host!r}, {port})" in str(exc):
        return f"{config.metrics_host}:{port} (--metrics-port: /healthz and /metrics)"
    return f"{config.host}:{config.port}"


def _why(exc: OSError) -> str:
    """``address already in use`` rather than asyncio's long sentence around it."""
    if exc.errno is not None and exc.errno in errno.errorcode:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc)).lower()
