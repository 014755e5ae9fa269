"""`opshub --help` and every subcommand's help speak to users: what the command does,
every option explained with its default, and an example to copy."""

from __future__ import annotations

import argparse

import pytest

from opshub.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "opshub"
              ) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command parser, depth first, with its full name."""
    out = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, f"{prefix} {name}")
    return out


COMMANDS = _commands(build_parser())
LEAVES = [(n, p) for n, p in COMMANDS
          if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def test_help_covers_every_command() -> None:
    """The walk finds every subcommand, so the checks below cannot pass vacuously."""
    names = {n for n, _ in COMMANDS}
    assert {"opshub serve", "opshub replay", "opshub bench hub", "opshub scenario check",
            "opshub schemas docs", "opshub keys", "opshub demo"} <= names


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_every_option_has_help_text(name: str, parser: argparse.ArgumentParser) -> None:
    """Every option and argument of every command says what it is for."""
    missing = [a.dest for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction)
               and (not a.help or a.help == argparse.SUPPRESS)]
    assert not missing, f"{name}: no help for {missing}"


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_shows_every_default(name: str, parser: argparse.ArgumentParser) -> None:
    """An option with a default (other than off or none) shows it in its help text."""
    formatter = parser._get_formatter()
    hidden = [a.option_strings[-1] for a in parser._actions
              if a.option_strings and a.default not in (None, False, argparse.SUPPRESS)
              and "default" not in formatter._get_help_string(a)]  # as --help prints it
    assert not hidden, f"{name}: default not shown for {hidden}"


@pytest.mark.parametrize(("name", "parser"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_first_line_says_what_the_command_does(name: str,
                                                    parser: argparse.ArgumentParser) -> None:
    """The description starts with what the command does, not with notes for developers."""
    first = (parser.description or "").strip().splitlines()[0] if parser.description else ""
    assert first, f"{name} has no description"
    assert "import" not in first.lower(), first


@pytest.mark.parametrize(("name", "parser"), LEAVES, ids=[n for n, _ in LEAVES])
def test_help_epilogue_gives_an_example(name: str, parser: argparse.ArgumentParser) -> None:
    """Every command's epilogue shows at least one command line to copy."""
    assert parser.epilog is not None, f"{name} has no epilogue"
    assert f"  {name}" in parser.epilog, parser.epilog
