r"""Probe an unedited ``flax.nnx`` model: execution order, backprop signal, what each layer sees.

The nnx counterpart of :mod:`jaxgrad.probe`, for :func:`jaxgrad.diagnose`.
Every module that owns an ``nnx.Param`` directly (``Linear``, ``Conv``,
``Embed``, ``LayerNorm``, ``BatchNorm``, any user module with its own
``nnx.Param`` attributes; a parameter belongs to the deepest module on its
path) becomes a perturbation point at its output and a recording point at its
input:

.. math::

   y_m = f_m(x_m; \theta_m) \;\to\; y_m + \epsilon_m, \qquad \epsilon_m = 0,

so that, in the same backward pass as the weight gradients,

.. math::

   \frac{\partial L}{\partial \epsilon_m}\Big|_{\epsilon = 0}
   = \frac{\partial L}{\partial y_m},

the backprop signal at module :math:`m`'s output, reported as
:math:`s_m = \mathbb{E}_b\|\partial L/\partial y_m[b]\|_2` over the leading
batch axis.

Mechanism. The model is split, ``nnx.split(model, nnx.Param, ...)``, into its
parameters :math:`\theta` and the rest of its state (batch statistics, RNG
streams), which flow through as ordinary arguments. A pure function
:math:`F(\theta, \epsilon) = (L, \text{input statistics})` merges them into a
fresh copy of the model, swaps the ``__class__`` of each parameter-owning
module *of the copy* for a subclass (made once per class) whose ``__call__``
runs the original, records the call, adds :math:`\epsilon_m` and returns, and
runs the copy on the batch. The user's model is never edited: not its
classes, not its state (batch statistics and RNG counters are not advanced;
the copy's updates are dropped). Then

* ``jax.eval_shape`` of :math:`F` (no FLOPs) gives the execution order (the
  order in which the calls *return*, as in the linen probe) and each output's
  shape, hence the zeros :math:`\epsilon = 0`;
* ``jax.jit`` of ``jax.value_and_grad(F, argnums=(0, 1), has_aux=True)`` at
  :math:`\epsilon = 0` gives :math:`L`, :math:`\partial L/\partial\theta` and
  :math:`\partial L/\partial\epsilon` together, and the per-layer reductions.

A module called several times shares one :math:`\epsilon_m` (its signal sums
over the calls) and keeps its first call's place in the order and its last
call's input statistics. Only ``__call__`` is probed. A module that runs inside
an nnx transform within the model (``nnx.scan``, ``nnx.vmap``, ``nnx.remat``,
``nnx.jit`` in ``__call__``) runs as a copy the probe does not know; it is run
unprobed, with a warning.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
import dataclasses
import functools
import threading
import types
from typing import Any
import warnings

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import probe as probe_lib
from jaxgrad.diagnostics._dense import dense_variances
from jaxgrad.diagnostics.gradients import example_norm, safe_norm

Path = tuple[Any, ...]  # a path in the model's graph: attribute names and list indices

_ACTIVE = threading.local()  # the recorders of the calls being traced, innermost last
_PROBED: dict[type, type] = {}  # original class -> its probed subclass
NORMS = (nnx.BatchNorm, nnx.LayerNorm, nnx.GroupNorm, nnx.RMSNorm, nnx.InstanceNorm)


def _name(path: Sequence[Any]) -> str:
  return "/".join(str(k) for k in path) or "(root)"


def _active() -> "_Recorder | None":
  stack = getattr(_ACTIVE, "stack", ())
  return stack[-1] if stack else None


@contextlib.contextmanager
def _recording(recorder: "_Recorder") -> Iterator[None]:
  outer = getattr(_ACTIVE, "stack", ())
  _ACTIVE.stack = (*outer, recorder)
  try:
    yield
  finally:
    _ACTIVE.stack = outer


def _probed_class(cls: type) -> type:
  """``cls`` with a ``__call__`` that reports to the active recorder (one subclass per class)."""
  if cls in _PROBED:
    return _PROBED[cls]

  @functools.wraps(cls.__call__)
  def __call__(self, *args, **kwargs):
    out = cls.__call__(self, *args, **kwargs)
    recorder = _active()
    return out if recorder is None else recorder.record(self, cls, args, kwargs, out)

  namespace = {"__call__": __call__, "__module__": cls.__module__,
               "__qualname__": cls.__qualname__, "_jaxgrad_probed": cls}
  # Keep the class's pytree registration as it was (nnx.Object subclasses require False).
  kwds = {"pytree": cls._pytree__is_pytree} if hasattr(cls, "_pytree__is_pytree") else {}
  _PROBED[cls] = types.new_class(cls.__name__, (cls,), kwds, lambda ns: ns.update(namespace))
  return _PROBED[cls]


@dataclasses.dataclass(frozen=True)
class Owner:
  """A module that owns parameters directly.

  Attributes:
    path: its path in the model's graph (as in ``nnx.state(model)``).
    kind: its class name (for display).
    params: ``{name relative to the module ('kernel', 'ws/0'): full path}``.
    is_dense: whether it is an ``nnx.Linear``, subclasses included (then
      ``sigma_w2``, ``sigma_b2``).
    is_norm: whether it is one of :data:`NORMS`, subclasses included.
  """

  path: Path
  kind: str
  params: Mapping[str, Path]
  is_dense: bool
  is_norm: bool


def owners(model: nnx.Module) -> dict[Path, Owner]:
  """The modules of ``model`` that own an ``nnx.Param`` directly, by path (the graph's order).

  A parameter belongs to the deepest module on its path, so a ``Linear``'s
  kernel is the ``Linear``'s, and a parameter held in a list attribute is its
  holder's (``'ws/0'``).
  """
  modules, params = {}, []
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Module):
      modules[tuple(path)] = node
    elif isinstance(node, nnx.Param):
      params.append(tuple(path))
  found: dict[Path, dict[str, Path]] = {}
  for p in params:
    owner = max((m for m in modules if p[:len(m)] == m), key=len)
    found.setdefault(owner, {})["/".join(str(k) for k in p[len(owner):])] = p
  return {path: Owner(path, type(node).__name__, found[path], isinstance(node, nnx.Linear),
                      isinstance(node, NORMS))
          for path, node in modules.items() if path in found}


@dataclasses.dataclass
class _Recorder:
  """The probe's state for one traced run of the model's copy."""

  paths: dict[int, Path]  # id of a probed module of the copy -> its path
  data_ids: frozenset[int]
  eps: Mapping[str, Any] | None
  seen: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
  stats: dict[str, dict[str, jax.Array]] = dataclasses.field(default_factory=dict)
  unprobed: set[str] = dataclasses.field(default_factory=set)

  def record(self, module: nnx.Module, cls: type, args: tuple[Any, ...],
             kwargs: Mapping[str, Any], out: Any) -> Any:
    path = self.paths.get(id(module))
    if path is None:  # a copy made by an nnx transform inside the model
      self.unprobed.add(cls.__name__)
      return out
    if not probe_lib.is_float_tree(out):
      return out
    name = _name(path)
    x = args[0] if args else next(iter(kwargs.values()), None)
    if name not in self.seen:
      self.seen[name] = {
          "path": path, "in_shape": tuple(x.shape) if hasattr(x, "shape") else None,
          "out_shape": tuple(jax.tree.leaves(out)[0].shape),
          "shapes": jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out)}
    self.stats[name] = probe_lib.input_stats(x, out, id(x) in self.data_ids)
    eps = None if self.eps is None else self.eps.get(name)
    if eps is None or jax.tree.structure(eps) != jax.tree.structure(out) or any(
        e.shape != a.shape for e, a in zip(jax.tree.leaves(eps), jax.tree.leaves(out))):
      return out
    return jax.tree.map(lambda a, e: a + e.astype(a.dtype), out, eps)


def _at(tree: Any, path: Path) -> Any:
  for k in path:
    tree = tree[k]
  return tree


@dataclasses.dataclass(frozen=True)
class Probe:
  """A split nnx model, its parameter owners and its loss, ready to probe.

  Build it with :func:`trace`; :meth:`measure` is the jit-able measurement.

  Attributes:
    graphdef, params, rest: ``nnx.split(model, nnx.Param, ...)``.
    owners: :func:`owners` of the model.
    rows: the probed calls in execution order, as :class:`jaxgrad.probe.Row`.
    shapes: ``{name: output shape tree}`` of each probed call (the zeros' shapes).
    call_kwargs: further arguments of the model's ``__call__``.
  """

  graphdef: Any
  params: Any
  rest: Any
  owners: Mapping[Path, Owner]
  rows: tuple[probe_lib.Row, ...] = ()
  shapes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  call_kwargs: tuple[tuple[str, Any], ...] = ()

  def forward(self, params: Any, eps: Mapping[str, Any] | None, rest: Any, x: Any,
              loss_fn: Callable[[Any], jax.Array]) -> tuple[jax.Array, _Recorder]:
    """:math:`L` of a probed copy of the model, and its recorder (perturbed by ``eps``)."""
    # New Variables, made at this trace level: the copy's in-place updates (batch statistics,
    # RNG counters) are legal here and reach neither the states passed in nor the model.
    copy = nnx.merge(self.graphdef, params, rest, copy=True)
    paths = {}
    for path, node in nnx.iter_graph(copy):
      if tuple(path) in self.owners and isinstance(node, nnx.Module):
        object.__setattr__(node, "__class__", _probed_class(type(node)))
        paths[id(node)] = tuple(path)
    recorder = _Recorder(paths, frozenset(id(a) for a in jax.tree.leaves(x)), eps)
    with _recording(recorder):
      out = copy(x, **dict(self.call_kwargs))
    return loss_fn(out), recorder

  def zeros(self) -> dict[str, Any]:
    return {name: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            for name, shapes in self.shapes.items()}

  def measure(self, params: Any, rest: Any, x: Any,
              loss_fn: Callable[[Any], jax.Array]) -> tuple[jax.Array, list[dict[str, Any]]]:
    """The loss and, per row, the arrays of ``diagnose._measure_row`` (jit-able)."""
    def loss(params, eps):
      value, recorder = self.forward(params, eps, rest, x, loss_fn)
      return value, recorder.stats

    (value, stats), (g_params, g_eps) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        params, self.zeros())
    theta, grads = nnx.to_pure_dict(params), nnx.to_pure_dict(g_params)
    batch = jax.tree.leaves(x)[0].shape[0]
    owner_of = {_name(o.path): o for o in self.owners.values()}
    measured = []
    for row in self.rows:
      name = row.names()[0]
      owner = owner_of[name]
      flat = lambda tree: jnp.concatenate(  # noqa: E731
          [jnp.ravel(_at(tree, owner.params[n])).astype(jnp.float32) for n in row.weight_names])
      out = {"grad": safe_norm(flat(grads)), "weight": safe_norm(flat(theta)),
             "zero_weight": jnp.all(flat(theta) == 0),
             "signal": example_norm(g_eps[name], batch), "stats": stats[name]}
      if owner.is_dense and "kernel" in owner.params:
        bias = owner.params.get("bias")
        out.update(dense_variances(_at(theta, owner.params["kernel"]),
                                   None if bias is None else _at(theta, bias)))
      measured.append(out)
    return value, measured


def trace(model: nnx.Module, x: Any, loss_fn: Callable[[Any], jax.Array] | None = None,
          **call_kwargs) -> Probe:
  """The probed structure of ``model(x, **call_kwargs)``, found without FLOPs.

  Args:
    model: an ``nnx.Module`` exactly as written (left unchanged).
    x: the input batch, leading batch axis.
    loss_fn: ``output -> scalar``, traced after the model (default: the sum of
      the output's first leaf, for a structure-only trace).
    **call_kwargs: further arguments of the model's ``__call__``.

  Raises:
    ValueError: for a model that is not an ``nnx.Module`` or that runs no
      module owning an ``nnx.Param``.
  """
  if not isinstance(model, nnx.Module):
    raise ValueError(f"model must be a flax.nnx.Module (for linen pass model and variables to "
                     f"jaxgrad.diagnose); got {type(model).__name__}")
  found = owners(model)
  if not found:
    raise ValueError(f"{type(model).__name__} holds no nnx.Param; nothing to probe")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  probe = Probe(graphdef, params, rest, found, call_kwargs=tuple(sorted(call_kwargs.items())))
  loss_fn = loss_fn or (lambda out: jnp.sum(jax.tree.leaves(out)[0]))
  box = {}

  def run(params, rest, x):
    value, recorder = probe.forward(params, None, rest, x, loss_fn)
    box["recorder"] = recorder
    return value

  jax.eval_shape(run, params, rest, x)
  recorder = box["recorder"]
  if recorder.unprobed:
    warnings.warn(f"modules of {sorted(recorder.unprobed)} ran inside an nnx transform within "
                  f"{type(model).__name__} (nnx.scan / vmap / remat / jit): they are not probed "
                  "and have no rows", stacklevel=2)
  if not recorder.seen:
    raise ValueError(f"{type(model).__name__} ran no module that owns parameters; "
                     "nothing to probe")
  rows = []
  for info in recorder.seen.values():
    owner = found[info["path"]]
    rows.append(probe_lib.Row(tuple(str(k) for k in owner.path), "__call__", owner.kind,
                              tuple(owner.params), None, has_signal=True, has_stats=True,
                              in_shape=info["in_shape"], out_shape=info["out_shape"],
                              is_dense=owner.is_dense, is_norm=owner.is_norm))
  shapes = {name: info["shapes"] for name, info in recorder.seen.items()}
  return dataclasses.replace(probe, rows=tuple(rows), shapes=shapes)


def measure(model: nnx.Module, x: Any, loss_fn: Callable[[Any], jax.Array],
            **call_kwargs) -> tuple[float, list[dict[str, Any]]]:
  r"""Loss and per-layer values of an nnx model, for ``diagnose.report_from_values``.

  Args:
    model: an ``nnx.Module`` exactly as written; its classes, parameters and
      state are left unchanged (BatchNorm statistics and RNG counters are not
      advanced).
    x: the input batch, leading batch axis.
    loss_fn: ``output -> scalar loss`` (close over the labels).
    **call_kwargs: further arguments of the model's ``__call__``.

  Returns:
    ``(loss, values)``: one dict of Python floats per probed module, in
    execution order, with the keys of the linen path (``name``, ``row``,
    ``grad``, ``weight``, ``zero_weight``, ``signal`` =
    :math:`\mathbb{E}_b\|\partial L/\partial y[b]\|`, ``stats`` =
    :func:`jaxgrad.probe.input_stats`; for ``nnx.Linear`` also ``sigma_w2`` =
    :math:`\mathrm{fan\_in}\,\overline{W^2}` and ``sigma_b2`` =
    :math:`\overline{b^2}`).

  Raises:
    ValueError: see :func:`trace`.

  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> class MLP(nnx.Module):
  ...   def __init__(self, rngs):
  ...     self.out = nnx.Linear(8, 1, rngs=rngs)
  ...     self.inp = nnx.Linear(3, 8, rngs=rngs)
  ...   def __call__(self, x):
  ...     return self.out(nnx.relu(self.inp(x)))
  >>> loss, values = measure(MLP(nnx.Rngs(0)), jnp.ones((4, 3)), lambda y: jnp.mean(y ** 2))
  >>> [v["name"] for v in values]
  ['inp', 'out']
  """
  probe = trace(model, x, loss_fn, **call_kwargs)
  loss, measured = jax.jit(lambda p, r, inp: probe.measure(p, r, inp, loss_fn))(
      probe.params, probe.rest, x)
  measured = jax.tree.map(np.asarray, measured)
  values = []
  for row, m in zip(probe.rows, measured):
    v = {"name": row.names()[0], "row": row,
         **{k: float(a) for k, a in m.items() if k != "stats"}}
    v["stats"] = {k: float(a) for k, a in m["stats"].items()}
    values.append(v)
  return float(loss), values
