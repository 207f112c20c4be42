"""The ``pygear`` command line: submit jobs, serve functions, watch gearmand.

Built on pygear's own Client, Worker and Admin.  Each subcommand is a module
of this package (``submit``, ``work``, ``admin``, ``exporter``) that imports only
``_common``; this module parses the arguments and maps errors to exit codes.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

from .. import __version__
from ..errors import GearmanError
from . import admin, exporter, submit, work
from ._common import (EPILOG, EXIT_INTERRUPTED, EXIT_OK, EXIT_ERROR, EXIT_USAGE, PROG, CliError,
                      common_options, error, exit_code_for, setup_logging, verbosity)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Submit Gearman jobs, serve functions and watch "
        "job servers, with pygear.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-V", "--version", action="version",
                        version="pygear %s" % __version__)
    common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (submit, work, admin, exporter):
        module.add_parser(sub, lambda p: common_options(p, suppress=True))
    return parser


def _split_command(argv: List[str]) -> Tuple[List[str], Optional[List[str]]]:
    """``work FN -- COMMAND ...``: everything after ``--`` is the command."""
    if "--" in argv:
        index = argv.index("--")
        if "work" in argv[:index]:
            return argv[:index], argv[index + 1:]
    return argv, None


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, command = _split_command(argv)
    parser = build_parser()
    # parse_known_args: argparse cannot take optional positionals after an
    # option (`submit FN --background DATA`); such leftovers fill them here.
    args, extras = parser.parse_known_args(argv)
    for name in getattr(args, "late_positionals", ()):
        if extras and getattr(args, name) is None and not extras[0].startswith("-"):
            setattr(args, name, extras.pop(0))
    if extras:
        parser.error("unrecognized arguments: %s" % " ".join(extras))
    args.exec_command = command
    args.verbose = verbosity(args)
    setup_logging(args.verbose, getattr(args, "log_prefix", PROG))
    try:
        return int(args.run(args) or 0)
    except CliError as exc:
        error(str(exc))
        if exc.code == EXIT_USAGE:
            parser.exit(EXIT_USAGE)
        return exc.code
    except GearmanError as exc:
        error(str(exc))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pygear ... | head`): nothing more to say.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except OSError as exc:
        error(str(exc))
        return EXIT_ERROR


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
