"""`--help` explains everything: every argument and subcommand of `digitrec` and `webservice.py` has a
help text, and every command that reads MNIST or Fashion-MNIST names the one lookup order it uses."""

from __future__ import annotations

import argparse

import pytest

from digitrec.cli import build_parser


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the parser itself and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def webservice_parser() -> argparse.ArgumentParser:
    from digitrec.service.cli import add_arguments

    parser = argparse.ArgumentParser(prog="webservice.py")
    add_arguments(parser)
    return parser


def test_every_argument_and_subcommand_has_help():
    missing = []
    for path, parser in [*commands(build_parser()), *commands(webservice_parser(), ("webservice.py",))]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = {choice.dest for choice in action._choices_actions if (choice.help or "").strip()}
                missing += [f"{' '.join(path)} {name} (subcommand)" for name in action.choices if name not in listed]
            elif not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path) or 'digitrec'} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "arguments without help:\n" + "\n".join(missing)


def test_the_help_check_sees_a_missing_help():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    sub.add_parser("quiet").add_argument("files")
    found = [a for _, p in commands(parser) for a in p._actions if not (a.help or "").strip()]
    assert [a.dest for a in found] == ["==SUPPRESS==", "files"]  # the unnamed subcommand list and the bare positional


@pytest.mark.parametrize(
    "command, option",
    [
        (("train",), "--datasets"),
        (("evaluate",), "--datasets"),
        (("calibrate",), "--datasets"),
        (("finetune",), "--datasets"),
    ],
)
def test_commands_that_read_datasets_name_one_lookup_order(command, option):
    from digitrec.learning import datasets

    parser = dict(commands(build_parser()))[command]
    action = next(a for a in parser._actions if option in a.option_strings)
    assert action.help.startswith(datasets.LOOKUP_HELP)
    order = ["this option", "$DIGITREC_DATASETS", "../shared/datasets", "~/.cache/digitrec/datasets"]
    positions = [action.help.find(step) for step in order]
    assert -1 not in positions and positions == sorted(positions), action.help
