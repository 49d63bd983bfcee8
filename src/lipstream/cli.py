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
    "lipstream.service.commands",
    "lipstream.frames.commands",
    "lipstream.serve",
    "lipstream.web.commands",
    "lipstream.integrations.record_session",
]
# Commands that need an optional extra: ("module:register function", the extra that provides
# it, its subcommands with their one-line help). The function runs only when one of their
# commands does, so that the other commands (the servers above all) start without PyTorch.
OPTIONAL_COMMANDS: list[tuple[str, str, dict[str, str]]] = [
    (
        "lipstream.avatar.commands:register_train",
        "torch",
        {"train": "train an avatar's lip-sync model from its dataset and write its package"},
    ),
    (
        "lipstream.avatar.commands:register_evaluate",
        "torch",
        {"evaluate": "measure a model package on a dataset's held-out frames (sync, PSNR, SSIM)"},
    ),
    (
        "lipstream.integrations.livekit:register",
        "livekit",
        {"livekit-avatar": "join a LiveKit room as a voice agent's avatar"},
    ),
]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; optional modules are imported only if ``argv`` runs one of theirs."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lipstream", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for target, extra, commands in OPTIONAL_COMMANDS:
        if not any(command in argv[:1] for command in commands):
            for command, help_text in commands.items():
                p = subparsers.add_parser(command, help=help_text, add_help=False)
                p.add_argument("rest", nargs=argparse.REMAINDER)
            continue
        module, function = target.split(":")
        try:
            getattr(importlib.import_module(module), function)(subparsers)
        except ModuleNotFoundError as exc:
            for command in commands:
                _register_missing(subparsers, command, extra, exc.name or "a dependency")
    return parser


def _register_missing(subparsers, command: str, extra: str, missing: str) -> None:
    """A subcommand that explains which extra to install instead of failing obscurely."""
    message = f"needs {missing}: pip install 'lipstream[{extra}]'"

    def explain(args: argparse.Namespace) -> int:
        print(f"lipstream {command}: {message}", file=sys.stderr)
        return 2

    p = subparsers.add_parser(command, help=f"(unavailable: {message})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=explain)


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LipstreamError as exc:
        print(f"lipstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
