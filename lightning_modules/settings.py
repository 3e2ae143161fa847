"""Constructors declared once: a class's parameters are the fields of its settings groups, so the
DataModules and the task modules of one family share their lists instead of copying them.

A group is a dataclass (its fields, with their types and defaults) or a tuple ``(function,
*names)`` (those parameters of ``function``; all of them without names), e.g. the function that
builds a DataModule's splits. A name a later group gives again keeps its place and its type and
takes the later default. ``lightning_modules/run/config_checks.py`` reads the generated signature
(names, defaults, type hints) as the schema of a config, as for a written-out constructor, and
Lightning's ``save_hyperparameters`` saves every argument, defaults included, in its order.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, ClassVar

Group = type | tuple[Any, ...]


def group_parameters(group: Group) -> list[inspect.Parameter]:
    """The parameters ``group`` declares, with evaluated type hints."""
    plain = inspect.Parameter.POSITIONAL_OR_KEYWORD
    if isinstance(group, tuple):
        function, *names = group
        hints = typing.get_type_hints(function)
        found = inspect.signature(function).parameters.values()
        chosen = [p for p in found if not names or p.name in names]
        return [p.replace(kind=plain, annotation=hints.get(p.name, p.empty)) for p in chosen]
    hints = typing.get_type_hints(group)
    parameters = []
    for field in dataclasses.fields(group):
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        default = inspect.Parameter.empty if default is dataclasses.MISSING else default
        annotation = hints[field.name]
        parameters.append(
            inspect.Parameter(field.name, plain, default=default, annotation=annotation)
        )
    return parameters


def declared_signature(*groups: Group) -> inspect.Signature:
    """``(self, ...)``: the parameters of ``groups``, in order (see the module's text)."""
    found: dict[str, inspect.Parameter] = {}
    for group in groups:
        for p in group_parameters(group):
            found[p.name] = found[p.name].replace(default=p.default) if p.name in found else p
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Signature([self, *found.values()])


class DeclaredSettings:
    """Mixin: a subclass that sets ``settings`` (its groups) gets the constructor they declare,
    which binds its arguments (a TypeError for an unknown or missing one, as before), fills in the
    defaults and calls the class's own ``__init__(self, **settings)`` with all of them, in the
    signature's order."""

    settings: ClassVar[tuple[Group, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "settings" not in cls.__dict__:
            return
        own = getattr(cls.__init__, "declared_over", cls.__init__)
        signature = declared_signature(*cls.settings)

        def __init__(self: Any, *args: Any, **settings: Any) -> None:
            bound = signature.bind(self, *args, **settings)
            bound.apply_defaults()
            own(self, **{k: v for k, v in bound.arguments.items() if k != "self"})

        __init__.__signature__ = signature  # type: ignore[attr-defined]
        __init__.__annotations__ = {
            p.name: p.annotation for p in signature.parameters.values() if p.name != "self"
        }
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.declared_over = own  # type: ignore[attr-defined]
        cls.__init__ = __init__  # type: ignore[method-assign]
