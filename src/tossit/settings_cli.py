"""The server commands' options, made from the settings classes.

``tossit brain`` and ``tossit node`` take one option per setting of
``BrainSettings`` / ``NodeSettings``: its name (``dead_after`` ->
``--dead-after``), its help (the field's description) and its default (the
field's) all come from the class, so a setting added there is a flag, a
``TOSSIT_*`` variable and a TOML key at once, and a default lives in one place.

Every option defaults to None, meaning "not given": the settings then take the
environment, the TOML file or their default, in that order (``Settings.load``).
Sizes are given as text (``4MiB``) and parsed by the settings' validators.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from tossit.config import format_size


def _parsed_from_text(cls: type[BaseModel]) -> set[str]:
    """Fields a validator parses from text first (sizes: "4MiB")."""
    return {f for d in cls.__pydantic_decorators__.field_validators.values()
            if d.info.mode == "before" for f in d.info.fields}


def _cli_type(cls: type[BaseModel], name: str, info: FieldInfo) -> type:
    """The option's type: the field's, except text for values a validator parses
    from text first (sizes) and for secrets."""
    before = _parsed_from_text(cls)
    tp: Any = info.annotation
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else str
    if name in before or tp is SecretStr or tp not in (int, float, bool, Path, str):
        return str
    return typing.cast(type, tp)


def _shown_default(info: FieldInfo, size: bool) -> str:
    default = info.default
    if default is None or "[" in (info.description or ""):
        return ""  # None: the description says what happens
    if isinstance(default, bool):
        return " [on]" if default else " [off]"
    if size and isinstance(default, int):
        return f" [{format_size(default)}]"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f" [{default}]"


def settings_parameters(cls: type[BaseModel], skip: frozenset[str] = frozenset()
                        ) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``cls`` (but ``skip``), annotated for Typer."""
    params = []
    sizes = _parsed_from_text(cls)
    for name, info in cls.model_fields.items():
        if name in skip:
            continue
        tp = _cli_type(cls, name, info)
        flag = "--" + name.replace("_", "-")
        text = (info.description or name.replace("_", " ")) + _shown_default(
            info, name in sizes)
        if tp is bool:
            option = typer.Option(f"{flag}/--no-{flag[2:]}", help=text, show_default=False)
        else:
            option = typer.Option(flag, help=text, show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[tp | None, option]))
    return params


def with_settings_options(cls: type[BaseModel], skip: frozenset[str] = frozenset()
                          ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a command whose own parameters come first and which takes the
    settings' flags as ``**flags``: Typer then sees an option per setting."""
    def wrap(func: Callable[..., None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        hints = typing.get_type_hints(func, include_extras=True)
        extra = settings_parameters(cls, skip | {p.name for p in own})

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> None:
            func(*args, **kwargs)

        params = own + extra
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {**{p.name: hints[p.name] for p in own if p.name in hints},
                                   **{p.name: p.annotation for p in extra}, "return": None}
        del command.__wrapped__  # Typer must read this signature, not the function's
        return command
    return wrap
