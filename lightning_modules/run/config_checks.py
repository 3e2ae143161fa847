"""Checks every setting of a composed config against what its ``_target_`` accepts, before anything
is instantiated: a key the target does not take, or a value of the wrong type, is a one-line
ConfigError that names the setting (``certify.alpha``, or ``sigma`` when a node only reads it).

The accepted keys and types are the target's own signature and type hints, so the check follows
the code: a new argument of a callback or module is checked without being listed here.
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from smoothcert.errors import ConfigError

# Keys Hydra reads itself; they are not arguments of the target.
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
# Groups that are not built from a `_target_` node (or are built by Hydra itself).
SKIPPED = {"hydra", "paths"}


def check_config(cfg: DictConfig, choices: Mapping[str, str] | None = None) -> None:
    """Raises ConfigError for the first key a target does not take, then for the first value of a
    type its target does not accept (unknown keys first: a key meant for another option explains
    the type errors that may follow it).

    ``choices`` (Hydra's runtime choices, e.g. ``{"certify": "cohen"}``) only improve messages.
    """
    nodes = list(_target_nodes(cfg))
    for path, node in nodes:
        _check_keys(path, node, choices or {})
    for path, node in nodes:
        _check_types(path, node)
    check_regime_used(cfg, choices or {})
    check_perturbation_used(cfg, choices or {})


# The regime of models that train on x + noise themselves (no ``objective``): plain augmentation.
PLAIN_REGIME = "smoothcert.regimes.GaussianAugmentation"


def _mentions(value: Any, text: str) -> bool:
    if isinstance(value, str):
        return text in value
    if isinstance(value, dict):
        return any(_mentions(v, text) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, text) for v in value)
    return False


def check_regime_used(cfg: DictConfig, choices: Mapping[str, str]) -> None:
    """Every model consumes the regime it is given: a model that takes no ``objective`` (it
    trains on x + noise itself, e.g. an autoencoder or a denoiser) accepts only the plain
    augmentation regime; any other regime would be silently ignored, so it is refused."""
    regime, model = cfg.get("regime"), cfg.get("model")
    if not isinstance(regime, DictConfig) or not isinstance(model, DictConfig):
        return
    if _mentions(OmegaConf.to_container(model, resolve=False), "${regime"):
        return
    if regime.get("_target_") != PLAIN_REGIME:
        name = choices.get("regime") or regime.get("_target_")
        model_name = choices.get("model") or model.get("_target_")
        raise ConfigError(
            f"regime={name} is not used by model={model_name}: it trains on x + noise itself "
            "(noise=... sets that noise); drop the regime override, or use a model that takes a "
            "regime (model.objective=${regime})"
        )


ADDITIVE = "smoothcert.perturbation.Additive"


def check_perturbation_used(cfg: DictConfig, choices: Mapping[str, str]) -> None:
    """A transformation (``perturbation=brightness``, ...) must reach both the training and the
    certifier: the model must train through a regime that reads it (``regime=gaussian``) and the
    certifier must read it (``certify=cohen``); otherwise it would be silently ignored."""
    perturbation = cfg.get("perturbation")
    if not isinstance(perturbation, DictConfig) or perturbation.get("_target_") == ADDITIVE:
        return
    name = choices.get("perturbation") or perturbation.get("_target_")
    model, regime, certify = (cfg.get(key) for key in ("model", "regime", "certify"))
    model_node = OmegaConf.to_container(model, resolve=False) if model is not None else {}
    uses_regime = _mentions(model_node, "${regime")
    regime_node = OmegaConf.to_container(regime, resolve=False) if regime is not None else {}
    if not uses_regime or not _mentions(regime_node, "${perturbation"):
        regime_name = choices.get("regime") or "the regime"
        raise ConfigError(
            f"perturbation={name} is not used in training by regime={regime_name} and "
            f"model={choices.get('model') or 'the model'} (they train on x + noise): use "
            "regime=gaussian, which trains on the transformation"
        )
    if isinstance(certify, DictConfig) and certify.get("_target_"):
        certify_node = OmegaConf.to_container(certify, resolve=False)
        own = isinstance(certify_node.get("perturbation"), dict)  # its own, e.g. rotation3d
        if not own and not _mentions(certify_node, "${perturbation"):
            raise ConfigError(
                f"certify={choices.get('certify') or certify.get('_target_')} does not smooth over "
                f"perturbation={name}: use certify=cohen (or perturbation=additive)"
            )


# ``${key}``, ``${key.sub}`` and ``${oc.select:key,default}``: the top-level keys a config reads.
_READS = re.compile(r"\$\{(?:oc\.select:\s*)?([A-Za-z_][\w-]*)\s*[.}\[,]")


def top_level_reads(cfg: DictConfig) -> set[str]:
    """Top-level keys some interpolation in ``cfg`` reads (e.g. ``sigma``, ``classifier_ckpt``)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.update(_READS.findall(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(OmegaConf.to_container(cfg, resolve=False))
    return found


def check_added_keys(cfg: DictConfig, overrides: Sequence[str], groups: Iterable[str]) -> None:
    """Refuses a top-level key added on the command line (``+sigmaa=0.3``, ``+ckpt=...``) that no
    setting reads and that is no config group: nothing would use it, so a misspelling would be
    silently ignored. The one line names the closest keys (difflib)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = set(groups)
    reads = top_level_reads(cfg)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        added = override.is_add() or override.is_force_add()
        if not added or override.package or "." in key or "/" in key:
            continue
        if key in groups or key in reads:
            continue
        known = sorted(
            k for k in {str(k) for k in cfg} | groups | reads if k not in (key, "hydra", "oc")
        )
        known = [k for k in known if "/" not in k]  # hydra/launcher and the like
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(known)}"
        example = f"{close[0] if close else 'sigma'}={override.get_value_element_as_str()}"
        raise ConfigError(
            f"+{key} is not a setting anything reads ({hint}): remove it, or set an existing "
            f"setting without the + (e.g. {example})"
        )


def check_launcher(launcher: DictConfig | None, trainer: DictConfig) -> None:
    """On SLURM, one process per task: ``tasks_per_node`` must equal ``trainer.devices`` and
    ``nodes`` must equal ``trainer.num_nodes``, or Lightning waits for processes that never
    start (or starts more than the job has GPUs for)."""
    if launcher is None or not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
        return
    pairs = [
        ("tasks_per_node", launcher.get("tasks_per_node"), "devices", trainer.get("devices")),
        ("nodes", launcher.get("nodes"), "num_nodes", trainer.get("num_nodes", 1)),
    ]
    for slurm_key, slurm_value, trainer_key, trainer_value in pairs:
        if isinstance(trainer_value, int) and slurm_value not in (None, trainer_value):
            raise ConfigError(
                f"hydra.launcher.{slurm_key}={slurm_value} but trainer.{trainer_key}="
                f"{trainer_value}: SLURM starts one process per task, so set both to the same "
                "value"
            )


def _target_nodes(cfg: DictConfig) -> Iterator[tuple[str, DictConfig]]:
    """(dotted path, node) of every node with a ``_target_``, nested ones included."""

    def walk(path: str, node: DictConfig) -> Iterator[tuple[str, DictConfig]]:
        if "_target_" in node:
            yield path, node
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                yield from walk(f"{path}.{key}", child)

    for key in cfg:
        node = cfg._get_node(key)
        if key not in SKIPPED and isinstance(node, DictConfig) and not node._is_none():
            yield from walk(str(key), node)


def _signature(path: str, node: DictConfig) -> tuple[Any, dict[str, inspect.Parameter], bool]:
    target = node._target_
    try:
        obj = hydra.utils.get_object(target)
    except Exception as error:
        raise ConfigError(
            f"{path}._target_={target} cannot be imported ({type(error).__name__}): check the "
            f"spelling, or that the package providing it is installed"
        ) from error
    return (obj, *_parameters(obj))


def _check_keys(path: str, node: DictConfig, choices: Mapping[str, str]) -> None:
    obj, params, takes_any = _signature(path, node)
    if takes_any:
        return
    group = path.split(".")[0]
    option = f"{group}={choices[group]}" if group in choices and "." not in path else path
    for key in node:
        if key not in HYDRA_KEYS and key not in params:
            raise ConfigError(
                f"{path}.{key} is not a setting of {option} ({_name(obj)} takes: "
                f"{', '.join(params)}): remove it, or choose the {group} option it belongs to"
            )


def _check_types(path: str, node: DictConfig) -> None:
    obj, params, _ = _signature(path, node)
    hints = _hints(obj, params)
    for key in node:
        key = str(key)
        hint = hints.get(key)
        child = node._get_node(key)
        if key in HYDRA_KEYS or hint is None:
            continue
        if isinstance(child, DictConfig) and "_target_" in child:
            continue  # a nested object: checked as a node of its own
        try:
            value = _plain(node, key)
        except Exception:  # a missing mandatory value or a broken interpolation: Hydra says so
            continue
        if _matches(value, hint) is False:
            raise ConfigError(_type_message(node, key, f"{path}.{key}", value, hint, params[key]))


def _plain(node: DictConfig, key: str) -> Any:
    """``node[key]`` resolved, as plain Python values."""
    value = node[key]
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _parameters(obj: Any) -> tuple[dict[str, inspect.Parameter], bool]:
    """The named parameters of a class's ``__init__`` or of a function, and whether it takes
    ``**kwargs``."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return {}, True
    params = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    return params, takes_any


def _hints(obj: Any, params: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
    """Evaluated type hints of the parameters; a hint that cannot be evaluated is left out."""
    function = obj.__init__ if inspect.isclass(obj) else obj
    try:
        return typing.get_type_hints(function)
    except Exception:  # one unresolvable name spoils the whole call: evaluate one at a time
        namespace = getattr(inspect.getmodule(function), "__dict__", {})
        hints = {}
        for name, p in params.items():
            if isinstance(p.annotation, str):
                try:
                    hints[name] = eval(p.annotation, namespace)  # noqa: S307 (own annotations)
                except Exception:
                    continue
            elif p.annotation is not inspect.Parameter.empty:
                hints[name] = p.annotation
        return hints


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` (plain Python, as the config holds it) fits ``hint``: True, False, or None
    where the hint is not one this check understands (classes, callables, Any)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    if origin in (typing.Union, types.UnionType):
        answers = [_matches(value, arg) for arg in args]
        if True in answers:
            return True
        return None if None in answers else False
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, Sequence, Iterable) and inspect.isclass(container):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if container is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                return False
            answers = [_matches(v, a) for v, a in zip(value, args, strict=True)]
        else:
            answers = [_matches(v, args[0]) for v in value]
        return False not in answers
    if container in (dict, Mapping) and inspect.isclass(container):
        return isinstance(value, dict)
    if inspect.isclass(hint) and not isinstance(value, (dict, list)):
        # A plain config value (number, string, bool, null) is never an instance of a class such
        # as nn.Module or Tensor; Hydra passes it through unchanged.
        try:
            return isinstance(value, hint)
        except TypeError:  # e.g. a Protocol that is not runtime-checkable
            return None
    return None


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if _describe(a)]
        return " or ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, Sequence, Iterable):
        return f"a list of {_plural(_describe(args[0]))}" if args else "a list"
    return {
        type(None): "null",
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
        Path: "a path",
    }.get(hint, "")


def _plural(description: str) -> str:
    return (
        description.replace("a whole number", "whole numbers")
        .replace("a number", "numbers")
        .replace("a string", "strings")
    )


def _type_message(
    node: DictConfig, key: str, setting: str, value: Any, hint: Any, param: Any
) -> str:
    """One line: the setting (or the top-level key it reads), the value, what it must be."""
    source = _interpolated_key(node, key)
    named = (
        f"{source}={_show(value)} (read by {setting})" if source else f"{setting}={_show(value)}"
    )
    wanted = _describe(hint) or "another type"
    if isinstance(value, list) and "list" not in wanted:
        problem = f"must be a single value ({wanted}), not a list"
    else:
        problem = f"must be {wanted}"
    example = ""
    default = getattr(param, "default", inspect.Parameter.empty)
    if default not in (inspect.Parameter.empty, None) and not callable(default):
        example = f", e.g. {source or setting}={_show(default)}"
    return f"{named} {problem}{example}"


def _interpolated_key(node: DictConfig, key: str) -> str | None:
    """``sigma`` when ``node[key]`` is the plain interpolation ``${sigma}``; else None."""
    raw = node._get_node(key)._value()
    if isinstance(raw, str) and raw.startswith("${") and raw.endswith("}") and raw.count("$") == 1:
        inner = raw[2:-1]
        if ":" not in inner:
            return inner
    return None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return repr(value) if value is None else str(value)


def _name(obj: Callable[..., Any]) -> str:
    return getattr(obj, "__name__", type(obj).__name__)
