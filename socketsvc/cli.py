"""The `socketsvc` command: serve, or mint an agent token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from socketsvc import __version__
from socketsvc.runtime import gcpolicy, logs
from socketsvc.services import tokens_for
from socketsvc.settings import Settings, SettingsError, markdown_table, plain_list

log = logging.getLogger("socketsvc.transport.server")

_HOST, _PORT = Settings.host, Settings.port

DESCRIPTION = f"""\
socketsvc: a real-time support chat backend over Socket.IO.

commands:
  socketsvc [serve]                              serve HTTP and Socket.IO (the default)
  socketsvc token agent --id ID --name NAME      print an agent JWT for the /agent namespace
  socketsvc token bot --name NAME                print a bot JWT for the /bot namespace
  socketsvc settings [--markdown]                list the settings (--markdown: the README's table)
  socketsvc migrate                              upgrade the database schema to this release's
  socketsvc visitor export ID                    print a visitor's conversations as JSON
  socketsvc visitor delete ID                    erase a visitor (every row; its tokens refused)
  socketsvc kb-eval [--kb PATH] [--labels PATH]  recall and false-answer rate of the bot's KBs

`serve` serves the namespaces /chat, /agent and /bot, the demo pages at /, and /healthz, /readyz and
/metrics on $HOST:$PORT (default {_HOST}:{_PORT}). Configuration comes from the environment
variables below (see the README's configuration table). `token agent` and `token bot` sign with
SOCKETSVC_SECRET, so run it with the same environment as the service. `migrate` upgrades the
schema at DATABASE_URL (a no-op when it is up to date; the Procfile's release phase runs it); a
service on PostgreSQL refuses to start on an older schema, SQLite is migrated at start.
`visitor export` and `visitor delete` work on DATABASE_URL (see SECURITY.md, personal data); the
host site's backend can do the same over HTTP (GET/DELETE /api/visitors/ID with ADMIN_TOKEN).
`kb-eval` asks the knowledge-base bot every question of a labelled set and prints recall and
false-answer rate (docs/bot-knowledge-base.md); without --kb, both packaged knowledge bases.

environment variables (default; accepted values):
{plain_list()}"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="socketsvc",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"socketsvc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve HTTP and Socket.IO (the default)")
    serve.add_argument("--host", help=f"address to bind (default $HOST or {_HOST})")
    serve.add_argument("--port", type=int, help=f"port to bind (default $PORT or {_PORT}; 0 = any)")
    token = commands.add_parser("token", help="mint a signed token")
    kinds = token.add_subparsers(dest="kind", metavar="KIND", required=True)
    agent = kinds.add_parser(
        "agent",
        help="print an agent JWT (HS256, signed with SOCKETSVC_SECRET) for the /agent namespace",
    )
    agent.add_argument("--id", required=True, help="the agent's id (the `sub` claim)")
    agent.add_argument("--name", required=True, help="the agent's display name")
    agent.add_argument(
        "--ttl", type=int, default=12 * 3600, help="seconds until it expires (default 43200)"
    )
    bot = kinds.add_parser(
        "bot", help="print a bot JWT (role bot, HS256 with SOCKETSVC_SECRET) for the /bot namespace"
    )
    bot.add_argument("--name", required=True, help="the bot's name (BOT=workers:NAME)")
    bot.add_argument(
        "--ttl", type=int, default=24 * 3600, help="seconds until it expires (default 86400)"
    )
    listing = commands.add_parser(
        "settings", help="list the settings: variable, default, accepted values"
    )
    listing.add_argument(
        "--markdown",
        action="store_true",
        help="print the README's configuration table instead (generated from the declarations)",
    )
    commands.add_parser(
        "migrate",
        help="upgrade the schema at DATABASE_URL to this release's (no-op when up to date)",
    )
    visitor = commands.add_parser("visitor", help="a visitor's personal data: export or erase")
    actions = visitor.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="print the visitor's conversations as JSON")
    export.add_argument("id", metavar="ID", help="the visitor's id")
    delete = actions.add_parser(
        "delete",
        help="erase the visitor: messages, read marks, conversations, the visitor; its tokens "
        "are refused afterwards",
    )
    delete.add_argument("id", metavar="ID", help="the visitor's id")
    kb_eval = commands.add_parser(
        "kb-eval",
        help="print the knowledge-base bot's recall and false-answer rate on a labelled set; "
        "exit 1 if below recall 80 %% or above false-answer rate 5 %%",
    )
    kb_eval.add_argument(
        "--kb",
        metavar="PATH",
        help="knowledge-base JSON (default: both packaged ones, default_kb.json and shop_kb.json)",
    )
    kb_eval.add_argument(
        "--labels",
        metavar="PATH",
        help="labelled set JSON (default: beside the knowledge base, NAME.labels.json)",
    )
    kb_eval.add_argument(
        "--threshold", type=float, help="evaluate at this threshold instead of the KB's own"
    )
    kb_eval.add_argument(
        "--sweep", action="store_true", help="also print recall and false-answer rate per threshold"
    )
    kb_eval.add_argument(
        "--mistakes",
        action="store_true",
        help="also list every missed or falsely answered question",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "settings":
        print(markdown_table() if args.markdown else plain_list(), end="")
        return 0
    if args.command == "kb-eval":
        return kb_eval(args.kb, args.labels, args.threshold, sweep=args.sweep, show=args.mistakes)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"socketsvc: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        if args.ttl <= 0:
            print("socketsvc: --ttl must be positive", file=sys.stderr)
            return 2
        if settings.agent_jwt_public_key is not None:
            print(
                "socketsvc: agents are verified with AGENT_JWT_PUBLIC_KEY; mint their tokens "
                "with the matching private key (your identity provider)",
                file=sys.stderr,
            )
            return 2
        tokens = tokens_for(settings)
        if args.kind == "bot":
            print(tokens.mint_bot(args.name, ttl=args.ttl))
        else:
            print(tokens.mint_agent(args.id, args.name, ttl=args.ttl))
        return 0
    if args.command == "migrate":
        return migrate(settings.database_url)
    if args.command == "visitor":
        return visitor(settings, args.action, args.id)
    host = getattr(args, "host", None) or settings.host
    port = settings.port if getattr(args, "port", None) is None else args.port
    logs.configure(settings.log_level, settings.log_format)
    from socketsvc.storage.schema import SchemaError

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(settings, host, port))
    except SchemaError as exc:
        print(f"socketsvc: not starting: {exc}", file=sys.stderr)
        return 3
    return 0


def migrate(database_url: str) -> int:
    """`socketsvc migrate`: upgrade to the newest revision, under the advisory lock."""
    from socketsvc.storage.database import create_engine
    from socketsvc.storage.schema import SchemaError, prepare

    async def run() -> str:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                return (await prepare(conn, "migrate")).describe()
        finally:
            await engine.dispose()

    try:
        print(f"socketsvc migrate: {asyncio.run(run())}")
    except SchemaError as exc:
        print(f"socketsvc migrate: {exc}", file=sys.stderr)
        return 3
    return 0


def visitor(settings: Settings, action: str, visitor_id: str) -> int:
    """`socketsvc visitor export|delete ID`: JSON on stdout; 1 for an unknown visitor."""
    import json

    from socketsvc.domain.errors import NotFound
    from socketsvc.services import privacy_for
    from socketsvc.storage.schema import SchemaError
    from socketsvc.storage.store import Store

    async def run() -> object:
        store = await Store.open(
            settings.database_url, settings.commit_delay, settings.sqlite_busy_timeout
        )
        try:
            privacy = privacy_for(settings, store)
            if action == "export":
                return await privacy.export(visitor_id)
            return {"erased": visitor_id, "deleted": await privacy.erase(visitor_id)}
        finally:
            await store.close()

    try:
        result = asyncio.run(run())
    except NotFound:
        print(f"socketsvc visitor {action}: no visitor {visitor_id}", file=sys.stderr)
        return 1
    except SchemaError as exc:
        print(f"socketsvc visitor {action}: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def kb_eval(
    kb_path: str | None,
    labels_path: str | None,
    threshold: float | None,
    *,
    sweep: bool,
    show: bool,
) -> int:
    """`socketsvc kb-eval`: the figures of each knowledge base; 1 if one misses the bounds."""
    from socketsvc.bots import evaluation
    from socketsvc.bots.knowledge import KnowledgeBaseError

    if labels_path is not None and kb_path is None:
        print("socketsvc kb-eval: --labels needs --kb", file=sys.stderr)
        return 2
    try:
        if kb_path is None:
            pairs = [evaluation.load_packaged(name) for name in evaluation.PACKAGED_KBS]
        else:
            labels_path = labels_path or evaluation.labels_path_for(kb_path)
            pairs = [evaluation.load_pair(kb_path, labels_path)]
    except KnowledgeBaseError as exc:
        print(f"socketsvc kb-eval: {exc}", file=sys.stderr)
        return 2
    ok = True
    for i, (kb, labels) in enumerate(pairs):
        raw = evaluation.outcomes(kb, labels)
        ev = evaluation.at_threshold(raw, kb.threshold if threshold is None else threshold)
        ok = ok and ev.meets_bounds
        if i:
            print()
        print(evaluation.report(kb, labels_path or evaluation.labels_path_for(kb.source), ev))
        if sweep:
            print("threshold  recall  false-answer rate")
            for row in evaluation.sweep(raw, range(0, 101, 5)):
                print(f"{row.threshold:9g}  {row.recall:6.1%}  {row.false_answer_rate:6.1%}")
        if show:
            print("mistakes (labelled -> answered, confidence):")
            print("\n".join(evaluation.mistakes(ev)) or "  none")
    return 0 if ok else 1


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (Linux, macOS), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - e.g. Windows
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


LISTEN_BACKLOG = 4096
"""Pending TCP connections the kernel queues for us (capped by `net.core.somaxconn`). aiohttp's
default, 128, drops the SYNs of a reconnect storm or a busy page's visitors past it, and each
dropped one waits a 1 s retransmit: with 200 handshakes in flight the process sat idle for half
of a bench ramp."""


async def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    from socketsvc.app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
    await site.start()
    for address in runner.addresses:
        log.info("listening on http://%s:%s", *address[:2])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with gcpolicy.running(settings):
        await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    log.info("stopped")
