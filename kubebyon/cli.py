"""The ``kubebyon`` command: serve, migrate, create-admin, config, --version."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from kubebyon import __version__, logs
from kubebyon.db.migrate import MigrationError
from kubebyon.secretbox import SecretKeyError
from kubebyon.settings import ConfigurationError, Settings, load_settings

EXIT_CONFIG = 2
EXIT_STARTUP = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubebyon", description="KubeBYON hosted-Kubernetes control plane"
    )
    parser.add_argument("--version", action="version", version=f"kubebyon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API and the reconcilers")
    serve.add_argument(
        "--no-api", action="store_true", help="run reconcilers and job workers only (extra workers)"
    )
    sub.add_parser("migrate", help="apply database migrations and exit")
    admin = sub.add_parser(
        "create-admin",
        help="create an admin (or reset an existing account's password and make it admin)",
    )
    admin.add_argument("--email", required=True)
    sub.add_parser("config", help="print the effective configuration, secrets masked")
    return parser


def _read_admin_password() -> str:
    from_env = os.environ.get("KUBEBYON_ADMIN_PASSWORD")
    if from_env:
        return from_env
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise ConfigurationError(["passwords do not match"])
        return first
    return sys.stdin.readline().rstrip("\n")


async def _migrate(settings: Settings) -> None:
    from kubebyon.daemon import database

    async with database(settings):
        pass


async def _create_admin(settings: Settings, email: str, password: str) -> str:
    from kubebyon.daemon import database
    from kubebyon.db.users import create_or_promote_admin
    from kubebyon.domain.passwords import hash_password

    async with database(settings) as db:
        user_id, created = await create_or_promote_admin(db, email, hash_password(password))
    return f"{'created' if created else 'updated'} admin {email} ({user_id})"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        for line in exc.lines:
            print(f"kubebyon: invalid configuration: {line}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.log_format, settings.log_level)

    from kubebyon.daemon import StartupError, serve

    try:
        if args.command == "config":
            for name, value in settings.masked().items():
                print(f"{name}={value}")
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
            print("migrations are up to date")
        elif args.command == "create-admin":
            from kubebyon.domain.passwords import password_problem
            from kubebyon.domain.validation import email_problem, normalize_email

            email = normalize_email(args.email)
            problem = email_problem(email)
            password = _read_admin_password()
            problem = problem or password_problem(password)
            if problem:
                raise ConfigurationError([problem])
            print(asyncio.run(_create_admin(settings, email, password)))
        elif args.command == "serve":
            asyncio.run(serve(settings, api=not args.no_api))
    except ConfigurationError as exc:
        for line in exc.lines:
            print(f"kubebyon: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except (StartupError, MigrationError, SecretKeyError) as exc:
        print(f"kubebyon: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
