"""The base function as every certifier needs it: its outputs on a batch are independent draws.

Each certificate assumes that the outputs on the rows of a batch are independent samples, each a
function of its own noisy input alone. A network left in train mode breaks that: BatchNorm
normalizes with the batch's statistics (the rows are coupled; measured: center smoothing certified
falsely 100 of 100 times) and overwrites its running statistics, dropout draws from torch's global
generator. :func:`certification_mode` therefore

1. puts in eval mode every module it finds (:func:`called_modules`: the function itself, a bound
   method's object, closure variables, default arguments, ``functools.partial`` arguments,
   ``__wrapped__``, an object's attributes, globals a function reads, and ``modules=``),
2. probes the function (:func:`probe_independence`): a batch of ``PROBE_ROWS`` noisy copies of x
   and an all-zero row (which moves batch statistics far from one row's), called twice and row by
   row. Every module called during the probe is put in eval mode before it runs, so a network the
   search missed is found too. The probe refuses, in one line, a function whose two identical
   calls differ (dropout or other randomness), whose rows depend on the rest of the batch
   (BatchNorm in train mode, or any statistic over the batch), or that changed a module buffer,
3. restores every module's mode afterwards (each submodule's own, not only the outermost's).

The probe's inputs come from a private generator and it runs inside ``torch.random.fork_rng``:
neither the certificate's noise streams nor torch's global generator are touched, so records are
the same with and without it. It costs ``PROBE_CALLS`` forward calls (the batch of
``PROBE_ROWS + 1`` rows twice, then each row alone), before the certifier's own. What it cannot
see: randomness or coupling that shows only on other inputs, a module called only on other inputs
and held where the search does not look, or the running statistics of a module it never sees.
"""

from __future__ import annotations

import contextlib
import functools
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from smoothcert.errors import ConfigError
from smoothcert.noise import Noise
from smoothcert.perturbation import ADDITIVE, Perturbation

PROBE_SEED = 20_201  # the probe's own generator
PROBE_ROWS = 3  # noisy copies of x in the probe batch (plus one all-zero row)
PROBE_CALLS = PROBE_ROWS + 3  # the batch twice, then each of its rows alone
PROBE_RTOL = 1e-3  # of a row's largest |output|: kernels for other batch sizes round differently
SEARCH_DEPTH = 4  # references followed from the base function
SEARCH_LIMIT = 5_000  # objects visited at most
SEARCH_ITEMS = 64  # items of a list, tuple or dict followed
FIX = (
    "call .eval() on the network before certifying, or pass it as modules=[...] (networks the "
    "certifier finds or sees called are switched already: look for a .forward() call, or a "
    "functional batch_norm / dropout with training=True)"
)
_LEAVES = (str, bytes, int, float, complex, bool, type(None), type, types.ModuleType, Tensor)


def _code_names(code: types.CodeType) -> list[str]:
    """The global names a code object and the functions nested in it read."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _code_names(const)
    return names


def _references(obj: object) -> list[object]:
    """The objects a callable may call through: see the module docstring."""
    if isinstance(obj, (*_LEAVES, nn.Module)):
        return []
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)[:SEARCH_ITEMS]
    if isinstance(obj, dict):
        return list(obj.values())[:SEARCH_ITEMS]
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, types.MethodType):
        return [obj.__self__, obj.__func__]
    found: list[object] = []
    if isinstance(obj, types.FunctionType):
        for cell in obj.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell
                found.append(cell.cell_contents)
        found += list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
        names = dict.fromkeys(_code_names(obj.__code__))
        found += [obj.__globals__[name] for name in names if name in obj.__globals__]
    with contextlib.suppress(TypeError):  # no __dict__; includes a function's __wrapped__
        found += list(vars(obj).values())
    return found


def called_modules(*roots: object) -> list[nn.Module]:
    """The ``nn.Module``s reachable from ``roots`` (a base function, further modules) through the
    references a callable may call through (breadth first, ``SEARCH_DEPTH`` steps)."""
    found: dict[int, nn.Module] = {}
    seen: set[int] = set()
    queue = deque((root, 0) for root in roots)
    while queue and len(seen) < SEARCH_LIMIT:
        obj, depth = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            found[id(obj)] = obj
        elif depth < SEARCH_DEPTH:
            queue.extend((child, depth + 1) for child in _references(obj))
    return list(found.values())


class EvalModes:
    """Modules put in eval mode, with each submodule's former mode and buffers (to restore)."""

    def __init__(self) -> None:
        self.outermost: list[tuple[nn.Module, bool]] = []
        self.modes: dict[int, tuple[nn.Module, bool]] = {}
        self.buffers: dict[int, tuple[nn.Module, dict[str, Tensor]]] = {}
        self.autocast: set[torch.dtype] = set()  # autocast dtypes a called module ran under

    def add(self, module: nn.Module) -> None:
        """Puts ``module`` in eval mode, first recording what ``restore`` and ``changed`` need."""
        if id(module) in self.modes:
            return
        self.outermost.append((module, module.training))
        for sub in module.modules():
            if id(sub) not in self.modes:
                self.modes[id(sub)] = (sub, sub.training)
                own = dict(sub.named_buffers(recurse=False))
                with torch.inference_mode(False):  # normal tensors, fit to be put back
                    saved = {k: v.detach().clone() for k, v in own.items()}
                self.buffers[id(sub)] = (sub, saved)
        module.eval()  # also when only a submodule is in train mode

    def changed(self) -> str:
        """The buffers that changed since ``add`` (each put back as it was), or ''."""
        names = []
        for sub, saved in self.buffers.values():
            now = dict(sub.named_buffers(recurse=False))
            for name, before in saved.items():
                after = now.get(name)
                if after is not None and after.shape == before.shape:
                    if torch.equal(after, before):
                        continue
                    with torch.no_grad():
                        after.copy_(before)
                else:
                    setattr(sub, name, before.clone())
                names.append(f"{type(sub).__name__}.{name}")
        return ", ".join(names)

    def restore(self) -> None:
        """Each module's and submodule's mode as it was before ``add``."""
        for module, training in reversed(self.outermost):
            module.train(training)  # runs a module's own train() override
        for sub, training in self.modes.values():
            sub.training = training

    @contextlib.contextmanager
    def discovering(self) -> Iterator[None]:
        """While open, every module called is added (put in eval mode) before its forward runs."""

        def hook(module: nn.Module, args: object) -> None:
            self.add(module)
            for device in ("cpu", "cuda"):
                if torch.is_autocast_enabled(device):
                    self.autocast.add(torch.get_autocast_dtype(device))

        handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()


def _differs(a: Tensor, b: Tensor, computed_in: Iterable[torch.dtype] = ()) -> float:
    """The largest difference of ``a`` and ``b`` beyond ``PROBE_RTOL`` of each row's largest
    |output| (0.0 if none), or beyond 8 ulps of the coarsest dtype they were computed or returned
    in (``computed_in``: autocast's bfloat16 rounds each layer to 8 bits, and another batch size
    may round differently; train-mode BatchNorm and dropout change outputs by far more); positions
    non-finite in either are left to the samplers' NaN check."""
    if a.shape != b.shape:
        return float("inf")
    if not (a.is_floating_point() and b.is_floating_point()):
        return float((a != b).any())
    dtypes = {a.dtype, b.dtype, *computed_in}
    rtol = max(PROBE_RTOL, *(8 * torch.finfo(dtype).eps for dtype in dtypes))
    a, b = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    both = torch.isfinite(a) & torch.isfinite(b)
    a, b = a.where(both, 0.0), b.where(both, 0.0)
    scale = torch.maximum(a.abs().amax(1, keepdim=True), b.abs().amax(1, keepdim=True))
    excess = (a - b).abs() - rtol * scale
    return max(0.0, float(excess.amax())) if excess.numel() else 0.0


def probe_inputs(
    x: Tensor, noise: Noise, perturbation: Perturbation = ADDITIVE, rows: int = PROBE_ROWS
) -> Tensor:
    """``rows`` perturbed copies of ``x`` drawn from ``noise`` with the probe's own generator,
    then one all-zero row: ``[rows + 1, *x.shape]``."""
    dtype = x.dtype if x.is_floating_point() else torch.float32
    generator = torch.Generator(device=x.device).manual_seed(PROBE_SEED)
    shape = perturbation.draw_shape(tuple(x.shape))
    draws = noise.sample((rows, *shape), generator, x.device, dtype)
    copies = perturbation.apply(x.to(dtype), draws)
    return torch.cat([copies, torch.zeros_like(copies[:1])])


def probe_independence(
    function: Callable[[Tensor], Tensor],
    x: Tensor,
    noise: Noise,
    modes: EvalModes | None = None,
    perturbation: Perturbation = ADDITIVE,
    name: str = "base function",
) -> None:
    """Raises a one-line ConfigError unless ``function`` is deterministic and maps each row of a
    batch independently of the others (see the module docstring); every module it calls is added
    to ``modes`` (put in eval mode) before it runs. Outputs that are not one tensor with a row per
    input are left to the certifier's own checks."""
    modes = EvalModes() if modes is None else modes
    rows = probe_inputs(x, noise, perturbation)
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode(), modes.discovering():
        first, again = function(rows), function(rows)
        if not isinstance(first, Tensor) or first.dim() == 0 or len(first) != len(rows):
            return
        try:
            single = torch.cat([function(row[None]) for row in rows])
        except (RuntimeError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(
                f"the {name} works on a batch but fails on a single input ({reason}): likely "
                f"BatchNorm in train mode; {FIX}"
            ) from error
    buffer = modes.changed()
    if buffer:
        raise ConfigError(
            f"the {name} changed the buffers {buffer} (put back) while running in eval mode: a "
            "certifier needs a function without state; keep buffers fixed while certifying"
        )
    gap = _differs(first, again, modes.autocast)
    if gap:
        raise ConfigError(
            f"the {name} is random: two calls on the same batch differ by {gap:.3g}; likely "
            f"dropout (or another random layer) in train mode; {FIX}"
        )
    gap = _differs(first, single, modes.autocast)
    if gap:
        raise ConfigError(
            f"the {name}'s output for an input depends on the other inputs of its batch (off by "
            f"{gap:.3g} from that input alone): likely BatchNorm in train mode; {FIX}"
        )


@contextlib.contextmanager
def certification_mode(
    function: Callable[[Tensor], Tensor],
    x: Tensor,
    noise: Noise,
    modules: Sequence[nn.Module] = (),
    perturbation: Perturbation = ADDITIVE,
    name: str = "base function",
) -> Iterator[None]:
    """Eval mode for every module found or called, the independence probe (a one-line
    ConfigError when it fails), then every mode restored: see the module docstring."""
    modes = EvalModes()
    try:
        for module in called_modules(function, *modules):
            modes.add(module)
        probe_independence(function, x, noise, modes, perturbation, name)
        yield
    finally:
        modes.restore()
