"""The `digitrec` command: one argparse tree; each area registers its own subcommands.

Subcommand modules import their heavy dependencies (TensorFlow, cassandra-driver) inside the handler,
so `digitrec records list` does not pay for importing TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

from digitrec.errors import DigitrecError
from digitrec.runtime import verbosity


def build_parser() -> argparse.ArgumentParser:
    from digitrec.cli import learning as learning_cli
    from digitrec.cli import model as model_cli
    from digitrec.cli import versions as versions_cli
    from digitrec.records import cli as records_cli
    from digitrec.service import cli as service_cli
    from digitrec.service import token_cli

    parser = argparse.ArgumentParser(prog="digitrec", description=__doc__.splitlines()[0])
    verbosity.add_verbose_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_cli.register(sub)
    versions_cli.register(sub)
    learning_cli.register(sub)
    records_cli.register(sub)
    service_cli.register(sub)
    token_cli.register(sub)
    _add_verbose_to_subcommands(parser)  # `digitrec records list -v` as well as `digitrec -v records list`
    return parser


def _add_verbose_to_subcommands(parser: argparse.ArgumentParser) -> None:
    """``-v`` on every subcommand, at any depth (``records list``, ``models promote``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                if not any("-v" in a.option_strings for a in command._actions):
                    verbosity.add_verbose_flag(command, subcommand=True)
                _add_verbose_to_subcommands(command)


def main(argv: list[str] | None = None) -> int:
    from digitrec.cli.model import from_records_argv

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(from_records_argv(argv) or argv)  # `train --from-records` is `finetune`
    args.argv = argv  # so commands can record exactly how they were invoked
    verbosity.configure(args.verbose)
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # output still buffered meets a closed pipe here rather than at exit
        return code
    except BrokenPipeError:  # the reader has gone (`digitrec models list | head -1`): stop quietly
        from digitrec.runtime.process_exit import detach_stdout

        detach_stdout()
        return 0
    except DigitrecError as exc:
        print(f"digitrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The `digitrec` program: ``main`` and then a quick exit (see ``digitrec.runtime.process_exit``)."""
    from digitrec.runtime.process_exit import exit_process

    exit_process(main())


if __name__ == "__main__":
    run()
