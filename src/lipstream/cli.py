"""The ``lipstream`` command: one subcommand per task a user runs."""

from __future__ import annotations

import argparse
import importlib
import sys

from lipstream.errors import LipstreamError

# Each module defines ``register(subparsers)``: its subcommands, with ``set_defaults(func=...)``.
COMMAND_MODULES: list[str] = [
    "lipstream.model.commands",
    "lipstream.bench",
    "lipstream.render",
    "lipstream.avatar.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipstream", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LipstreamError as exc:
        print(f"lipstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
