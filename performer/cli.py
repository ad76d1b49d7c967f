"""The ``drum-performer`` command: one thin entry point over the packages' own subcommands.

``drum-performer [live options]`` plays live; subcommands: ``sample``, ``styles``,
``train``, ``export``, ``eval``, ``ports``. Each package owns its commands, parser and
runner together (:data:`COMMANDS`): ``performer.offline`` (sample, styles),
``train.commands`` (train, eval), ``export.commands`` (export) and
``performer.live_cli`` (live, ports). Those modules import nothing heavy at
import time; a runner imports what its command needs, so the live and sample
paths start fast and never load torch. A new command is one module with an
``add_parsers(sub)`` function, listed here.

Every expected failure is one ``drum-performer: error: ...`` line on stderr and
a non-zero exit; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from model.errors import DrumPerformerError

PROG = "drum-performer"
# in the order their subcommands appear in --help
COMMANDS = ("performer.offline", "train.commands", "export.commands", "performer.live_cli", "performer.band_cli")


def _die(msg: str, code: int = 1) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one error line (and where to look), not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="An AI drummer that follows your DAW's MIDI clock. "
        "Without a subcommand it plays live (see 'drum-performer live --help').",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", metavar="{live,sample,styles,train,export,eval,ports}")
    for name in COMMANDS:
        importlib.import_module(name).add_parsers(sub)
    p.set_defaults(subcommands=tuple(sub.choices))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # No subcommand (or only options) means the live performer; -v before the live
    # options (``-v --bpm 120``) is still the top-level flag, so "live" goes after it.
    i = 0
    while i < len(argv) and (argv[i] == "--verbose" or re.fullmatch(r"-v+", argv[i])):
        i += 1
    if i == len(argv) or (argv[i] not in parser.get_default("subcommands") and argv[i] not in ("-h", "--help")):
        argv = [*argv[:i], "live", *argv[i:]]
    a = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(a.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    try:
        return a.func(a)
    except DrumPerformerError as e:
        return _die(str(e), getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1

if __name__ == "__main__":
    sys.exit(main())
