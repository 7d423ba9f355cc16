"""The root command group that loads commands on first use, and help that reads like English.

`corral --help` must not import the whole program, and `corral workloads ls` must not pay
for the server's commands. The root group knows each command by name, module and help line
(``Lazy``); it imports a command's module only when that command is run or asked for its
own help, and a group such as `corral workloads` builds only the command that runs.

Options show human type names (TEXT, INTEGER, PATH, a|b|c) instead of Typer's Python ones
(``<str>``, ``<list[str]>``, ``<int range>``), and arguments show their name once, in capitals.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, NamedTuple

import typer
import typer.main
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandInfo, TyperInfo


class Lazy(NamedTuple):
    module: str
    attribute: str  # a Typer app (a command group) or a function (a command)
    help: str  # the line `corral --help` shows; must equal the command's own (a test checks)


_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER", "float": "NUMBER", "float range": "NUMBER",
               "bool": "BOOLEAN", "Path": "PATH", "path": "PATH", "file": "FILE", "directory": "DIRECTORY",
               "datetime": "DATETIME"}


def human_type(python_name: str) -> str:
    """Typer's ``<list[str]>`` as ``TEXT``; choices (``a|b``) are kept as they are."""
    name = python_name.strip("<>")
    while name.startswith("list[") and name.endswith("]"):
        name = name[len("list["):-1]
    return _TYPE_NAMES.get(name, name)


class _HumanOption(TyperOption):
    def display_type(self, ctx: Any) -> str:
        return human_type(super().display_type(ctx))


class _HumanArgument(TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the argument's name says what it is

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


def humanise(command: Any) -> Any:
    """Human type names in the help of ``command`` and every command below it."""
    for param in command.params:
        if type(param) is TyperOption:
            param.__class__ = _HumanOption
        elif type(param) is TyperArgument:
            param.__class__ = _HumanArgument
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
    for sub in getattr(command, "commands", {}).values():
        humanise(sub)
    return command


class _Placeholder(TyperCommand):
    """What the root's help lists for a command not loaded yet: its name and help line."""


class _SubGroup(TyperGroup):
    """A command group (`corral workloads`) that builds a command's parameters when that
    command runs: `corral workloads ls` does not pay for `submit`, `logs`, ... (Typer
    inspects each function's signature and builds a validator per parameter)."""

    _infos: dict[str, CommandInfo]
    _settings: dict[str, Any]

    @classmethod
    def of(cls, app: typer.Typer, name: str, *, suggest_commands: bool, **settings: Any) -> _SubGroup:
        shell = copy.copy(app)
        shell.registered_commands = []  # the group itself (help, callback), its commands come later
        group = typer.main.get_group_from_info(TyperInfo(shell, name=name), suggest_commands=suggest_commands,
                                               **settings)
        group.__class__ = cls
        group._infos = {info.name or typer.main.get_command_name(info.callback.__name__): info  # type: ignore
                        for info in app.registered_commands}
        group._settings = settings
        return group  # type: ignore[return-value]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self._infos:
            command = typer.main.get_command_from_info(self._infos[cmd_name], **self._settings)
            self.commands[cmd_name] = humanise(command)
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self._infos, *(name for name in self.commands if name not in self._infos)]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self._infos:  # a typo: build them all, to suggest the nearest
            for name in self._infos:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


class LazyGroup(TyperGroup):
    """A root group whose commands (``COMMANDS``: name -> Lazy) are loaded on first use."""

    COMMANDS: dict[str, Lazy] = {}
    PRETTY_EXCEPTIONS_SHORT = True  # as the Typer app's (Typer passes it to commands it builds)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        humanise(self)
        for name, lazy in self.COMMANDS.items():
            self.commands.setdefault(name, _Placeholder(name=name, help=lazy.help))

    def load(self, name: str) -> TyperCommand | TyperGroup:
        """The real command ``name`` (imported and built once), in place of its placeholder."""
        command = self.commands[name]
        if isinstance(command, _Placeholder):
            lazy = self.COMMANDS[name]
            target = getattr(importlib.import_module(lazy.module), lazy.attribute)
            settings: dict[str, Any] = {"pretty_exceptions_short": self.PRETTY_EXCEPTIONS_SHORT,
                                        "rich_markup_mode": self.rich_markup_mode}
            if isinstance(target, typer.Typer):
                command = _SubGroup.of(target, name, suggest_commands=self.suggest_commands, **settings)
            else:
                command = typer.main.get_command_from_info(CommandInfo(name=name, callback=target), **settings)
            self.commands[name] = humanise(command)
        return command  # type: ignore[return-value]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in self.COMMANDS:
            self.load(args[0])
        return super().resolve_command(ctx, args)


def lazy_group(commands: dict[str, Lazy], *, pretty_exceptions_short: bool = True) -> type[LazyGroup]:
    """A root group class (Typer's ``cls=``) that loads ``commands`` on first use."""
    return type("LazyRootGroup", (LazyGroup,),
                {"COMMANDS": commands, "PRETTY_EXCEPTIONS_SHORT": pretty_exceptions_short})
