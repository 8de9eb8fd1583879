"""The `openlpu` command. Thin: each subcommand lives in `openlpu.commands.<name>` and calls the layers."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from openlpu.errors import UserError

# One module per subcommand, each with `register(subparsers)`; the order is the order of `--help`.
COMMANDS = ["demo", "info", "asm", "compile", "generate", "chat", "eval", "cost", "predict", "reproduce", "system",
            "network", "serve", "bench"]

EPILOG = """examples:
  openlpu info --chip tsp-v1          the chip's parameters and derived peak figures
  openlpu asm run examples/add.s      assemble, verify and run a program cycle by cycle
  openlpu generate --prompt "Hi"      a real model answers on the simulated LPU, with its timing
  openlpu demo                        the main job of `make demo`
run `openlpu COMMAND --help` for each command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openlpu",
        description="An open, executable model of Groq's LPU: program it, compile for it, run it cycle by cycle.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"openlpu.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return args.run(args) or 0
    except UserError as err:
        print(f"openlpu: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("openlpu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # a bug of ours: one line for the user, the traceback with OPENLPU_DEBUG=1
        if os.environ.get("OPENLPU_DEBUG"):
            raise
        print(f"openlpu: internal error ({err.__class__.__name__}: {err}); this is a bug in openlpu: please "
              f"report the command line (OPENLPU_DEBUG=1 shows the traceback).", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
