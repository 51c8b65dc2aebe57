"""The ``kitchencam`` command: every role and the operator's tools."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import sys
from collections.abc import AsyncIterator, Iterator, Sequence

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from kitchencam import demo, logs
from kitchencam.app import StartupError, connect_redis, create_app
from kitchencam.embedded_redis import EmbeddedRedis, EmbeddedRedisError, find_redis_server
from kitchencam.registry import Conflict, NotFound
from kitchencam.secretbox import generate_key
from kitchencam.settings import Settings, SettingsError, load_settings
from kitchencam.users import ROLES, Users
from kitchencam.workers import WorkerPool, worker_count

log = logging.getLogger("kitchencam")

URL_FILE = "redis.url"
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'
# Relay processes get viewers' signalling from web processes: log whom it is for.
RELAY_ACCESS_LOG_SUFFIX = " for %{X-Forwarded-For}i"


class CliError(Exception):
    """Stops the command with a message and exit status 2."""


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (KITCHENCAM_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (KITCHENCAM_PORT, default 8080)")
    parser.add_argument("--data-dir", help="data directory (KITCHENCAM_DATA_DIR)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="kitchencam",
        description="Live kitchen cameras for food delivery, with compliance checks. "
        "Settings come from KITCHENCAM_* environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run every role on this machine (embedded Redis unless KITCHENCAM_REDIS_URL is set)",
        description="Run web and checker in this process and the relay role in one worker "
        "process per CPU core (KITCHENCAM_RELAY_WORKERS). Without KITCHENCAM_REDIS_URL "
        "a private Redis is started in the data directory and stopped on exit.",
    )
    _server_flags(serve)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="add a demo restaurant with simulated kitchen cameras and print a demo "
        "regulator's sign-in (KITCHENCAM_DEMO)",
    )
    for role, text in (
        ("web", "serve pages, the API, WHEP signalling, /metrics and /healthz"),
        ("relay", "pull cameras and relay them to viewers"),
        ("checker", "turn evidence into camera states and compliance events"),
    ):
        p = sub.add_parser(role, help=f"{text} (needs KITCHENCAM_REDIS_URL)", description=text)
        _server_flags(p)

    user = sub.add_parser("user", help="manage regulator accounts", description="Manage accounts.")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_sub.add_parser("add", help="create an account and print its API token once")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of prompting",
    )
    user_sub.add_parser("list", help="list accounts")
    remove = user_sub.add_parser("remove", help="delete an account")
    remove.add_argument("name")
    for p in (add, remove, user_sub.choices["list"]):
        p.add_argument("--data-dir", help="data directory (KITCHENCAM_DATA_DIR)")

    check = sub.add_parser(
        "check-config",
        help="validate settings and reach Redis, then exit",
        description="Validate every setting, show them (secrets hidden), and check that Redis "
        "(or the embedded Redis binary) is usable. Exit status 0 when all is well.",
    )
    check.add_argument("--data-dir", help="data directory (KITCHENCAM_DATA_DIR)")
    sub.add_parser("gen-key", help="print a new KITCHENCAM_SECRET_KEY")
    analyze = sub.add_parser(
        "analyze",
        help="run the compliance checks on a video file or camera URL, one JSON line per sample",
        description="Sample keyframes of SOURCE (a video file, or an rtsp:// camera URL that "
        "passes the address policy) and print one JSON line per sample: "
        '{"t": <media seconds>, "state": "<state>", "measures": {...}}. No Redis needed.',
    )
    analyze.add_argument("source", metavar="SOURCE", help="video file or camera URL")
    analyze.add_argument(
        "--interval", type=float, help="seconds between samples (KITCHENCAM_SAMPLE_INTERVAL_S)"
    )
    analyze.add_argument("--max-seconds", type=float, help="stop after this much media time")
    analyze.add_argument("--username", help="camera user name")
    analyze.add_argument(
        "--password-stdin", action="store_true", help="read the camera password from stdin"
    )
    red = sub.add_parser(
        "redis",
        help="run a persistent Redis for the multi-process form (the Procfile's redis line)",
        description="Run the bundled redis-server in the foreground on 127.0.0.1, with an "
        "append-only file (fsynced before each answer) in the data directory.",
    )
    red.add_argument("--port", type=int, default=6379, help="port on 127.0.0.1 (default 6379)")
    red.add_argument("--data-dir", help="data directory (KITCHENCAM_DATA_DIR)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``kitchencam`` command."""
    args = build_parser().parse_args(argv)
    if args.command == "gen-key":
        print(generate_key())
        return
    try:
        settings = load_settings(
            host=getattr(args, "host", None),
            port=getattr(args, "port", None) if args.command != "redis" else None,
            data_dir=getattr(args, "data_dir", None),
            demo=True if getattr(args, "demo", False) else None,
        )
    except SettingsError as err:
        sys.exit(f"kitchencam: {err}")
    logs.configure(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            serve(settings)
        elif args.command in ("web", "relay", "checker"):
            run_role(settings, args.command)
        elif args.command == "user":
            asyncio.run(user_command(settings, args))
        elif args.command == "check-config":
            sys.exit(check_config(settings))
        elif args.command == "redis":
            sys.exit(run_redis(settings, args.port))
        elif args.command == "analyze":
            analyze_command(settings, args)
    except (CliError, StartupError, EmbeddedRedisError) as err:
        sys.exit(f"kitchencam: {err}")


def serve(settings: Settings) -> None:
    """Every role on one machine, on the embedded Redis unless a URL is configured."""
    if settings.redis_url is not None:
        _serve(settings, settings.redis_url.get_secret_value())
        return
    with _embedded(settings) as url:
        _serve(settings, url)


def _serve(settings: Settings, redis_url: str) -> None:
    """Web and checker here; the relay role in worker processes (or here, with 0 workers)."""
    count = worker_count(settings)
    if count == 0:
        _run(settings, redis_url, ("web", "relay", "checker"))
    else:
        _run(settings, redis_url, ("web", "checker"), WorkerPool(settings, redis_url, count))


def run_role(settings: Settings, role: str) -> None:
    """One role in this process, on the configured Redis."""
    if settings.redis_url is None:
        raise CliError(
            f"the {role} role needs KITCHENCAM_REDIS_URL (a Redis shared by every process); "
            "for one process with an embedded Redis, run `kitchencam serve`"
        )
    _run(settings, settings.redis_url.get_secret_value(), (role,))


@contextlib.contextmanager
def _embedded(settings: Settings) -> Iterator[str]:
    embedded = EmbeddedRedis(settings.data_dir)
    embedded.start()
    url_file = settings.data_dir / URL_FILE
    try:
        _write_private(url_file, embedded.url)
        yield embedded.url
    finally:
        url_file.unlink(missing_ok=True)
        embedded.stop()


def run_redis(settings: Settings, port: int) -> int:
    """Run a persistent Redis in the foreground until SIGINT or SIGTERM."""
    import signal

    server = EmbeddedRedis(settings.data_dir, port=port, private=False)

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server.start()
    log.info("Redis for kitchencam listening on redis://127.0.0.1:%s/0", port)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def _write_private(path: object, text: str) -> None:
    import os

    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _run(
    settings: Settings, redis_url: str, roles: tuple[str, ...], workers: WorkerPool | None = None
) -> None:
    app = create_app(settings, redis_url, roles, workers=workers)
    if settings.demo and "web" in roles:
        app.cleanup_ctx.append(demo.announce_ctx())
    what = "+".join(roles)
    if workers is not None:
        what += f" with {len(workers.workers)} relay worker processes"

    access_format = ACCESS_LOG_FORMAT
    if roles == ("relay",):
        access_format += RELAY_ACCESS_LOG_SUFFIX

    def announce(_: str) -> None:
        where = f"http://{settings.host}:{settings.port}"
        log.info("kitchencam %s listening on %s (Ctrl-C to stop)", what, where)

    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=announce,
        access_log_format=access_format,
        handler_cancellation=True,
    )


@contextlib.asynccontextmanager
async def _cli_redis(settings: Settings) -> AsyncIterator[Redis]:
    """Redis for one-off commands: the configured one, the running serve's, or a brief
    embedded one when no serve runs on the data directory."""
    if settings.redis_url is not None:
        client = connect_redis(settings.redis_url.get_secret_value())
        try:
            yield client
        finally:
            await client.aclose()
        return
    url_file = settings.data_dir / URL_FILE
    if url_file.exists():
        client = connect_redis(url_file.read_text().strip())
        try:
            await client.ping()
            yield client
            return
        except (RedisError, OSError):
            pass
        finally:
            await client.aclose()
    with EmbeddedRedis(settings.data_dir) as embedded:
        client = connect_redis(embedded.url)
        try:
            yield client
        finally:
            await client.aclose()


async def user_command(settings: Settings, args: argparse.Namespace) -> None:
    """``kitchencam user add|list|remove``."""
    async with _cli_redis(settings) as redis:
        users = Users(redis)
        try:
            if args.user_command == "add":
                password = _read_password(args.password_stdin)
                user, token = await users.add(args.name, args.role, password)
                print(f"created {user.role} {user.name}")
                print(f"API token (shown only now): {token}")
            elif args.user_command == "list":
                for u in await users.list():
                    print(f"{u.name}\t{u.role}")
            elif args.user_command == "remove":
                await users.remove(args.name)
                print(f"removed {args.name}")
        except (ValueError, Conflict, NotFound) as err:
            raise CliError(str(err)) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CliError("the passwords differ")
    return first


def check_config(settings: Settings) -> int:
    """Print the settings (secrets hidden) and check Redis; 0 when usable."""
    for name, value in settings.model_dump().items():
        print(f"KITCHENCAM_{name.upper()} = {value}")
    if settings.redis_url is None:
        try:
            print(f"embedded Redis: {find_redis_server()}")
        except EmbeddedRedisError as err:
            print(f"embedded Redis: {err}")
            return 1
        return 0

    async def ping() -> None:
        client = connect_redis(settings.redis_url.get_secret_value())  # type: ignore[union-attr]
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (RedisError, OSError) as err:
        print(f"Redis: unreachable ({type(err).__name__}: {err})")
        return 1
    print("Redis: reachable")
    return 0


def analyze_command(settings: Settings, args: argparse.Namespace) -> None:
    """``kitchencam analyze SOURCE``."""
    from kitchencam.compliance.analyze import AnalyzeError, run

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    try:
        run(
            args.source,
            settings,
            sys.stdout,
            interval_s=args.interval,
            max_seconds=args.max_seconds,
            username=args.username,
            password=password,
        )
    except AnalyzeError as err:
        raise CliError(str(err)) from None
    except (KeyboardInterrupt, BrokenPipeError):
        pass
