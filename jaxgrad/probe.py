r"""Probe an unedited ``flax.linen`` model: execution order, backprop signal, what each layer sees.

Every module that owns parameters directly (``Dense``, ``DenseGeneral``,
``Conv``, ``Embed``, attention projections, norms, any user module that calls
``self.param``) becomes, through :func:`flax.linen.intercept_methods`, a
perturbation point at its output, :math:`y_m \to y_m + \epsilon_m`, and a
recording point at its input. The model is run exactly as written: no
``perturb``, no base class, no change to its code. Then

.. math::

   \frac{\partial L}{\partial \epsilon_m} = \frac{\partial L}{\partial y_m},

the backprop signal at module :math:`m`'s output, comes out of the same
backward pass as the weight gradients (``jax.value_and_grad`` with respect to
``params`` and the zero perturbations together).

Structure comes from the execution, never from names:

* **order**: the order in which the interceptor sees the calls return (a
  module's output, where its signal sits, comes after its children's);
* **scanned stacks**: inside ``nn.scan`` a module sees its parameters without
  the leading layer axis that the params tree holds; that difference of
  shapes, not a module's name, marks a stack and its length. A stack whose
  ``variable_axes`` carries ``'perturbations'`` gives one signal per layer;
  one whose ``variable_axes`` does not (perturbations are then dropped by Flax
  without a word) gives rows marked ``has_signal=False``, weight-gradient only.
  An ``nn.vmap`` ensemble looks the same to the probe, and its members are
  reported as consecutive layers.

A module called more than once (weight sharing) has one perturbation, so its
signal is the sum of :math:`\partial L/\partial y` over its calls at the first
call's output shape (calls at other shapes are not perturbed), and its input
statistics are the last such call's.

:func:`trace` finds the structure (with ``jax.eval_shape``: no FLOPs);
:meth:`Probe.value_and_grad` is the jit-able measurement.
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

PERTURBATIONS = "perturbations"
SIGNAL = "jaxgrad_signal"  # the probe's perturbation at a module's output
STATS = "jaxgrad_stats"  # what the probe records at a module's input (sown beside it)
SATURATION_THRESHOLD = 0.05  # phi'(a) / max phi' below this: a saturated entry
NORMS = (nn.BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.InstanceNorm)  # and subclasses


def layer_names(path: Sequence[str], stack: tuple[int, int] | None) -> list[str]:
  """The module path ``'/'``-joined (``'(root)'`` for the root); in a stack ``(s, n)``,
  component ``s`` numbered ``_000`` … ``_{n-1}``, one name per layer."""
  path = tuple(path)
  if stack is None:
    return ["/".join(path) or "(root)"]
  s, n = stack
  return ["/".join(path[:s] + (f"{path[s]}_{i:03d}",) + path[s + 1:]) for i in range(n)]


@dataclasses.dataclass(frozen=True)
class Row:
  r"""One probed module call, as the interceptor saw it.

  Attributes:
    path: module path, as in the params tree.
    method: the method called (``'__call__'`` for most modules).
    kind: the module's class name (``'Dense'``, ``'BatchNorm'``, ...), for display
      only: what the module is comes from its type (``is_dense``, ``is_norm``).
    param_names: the parameters the module owns directly.
    stack: ``(index of the scanned component in path, number of layers)``, or
      None outside a scanned stack.
    has_signal: whether the backprop signal at its output is measured (False
      inside an ``nn.scan`` whose ``variable_axes`` lack ``'perturbations'``).
    has_stats: whether its input statistics are recorded (same condition).
    in_shape, out_shape: shapes of its first input and output (one layer's,
      inside a stack), which tell where layers form a chain.
    is_dense: whether it is a dense layer :math:`y = xW + b` (a
      ``flax.linen.Dense`` or ``flax.nnx.Linear``, subclasses included), whose
      kernel and bias have mean-field variances :math:`\sigma_w^2, \sigma_b^2`.
    is_norm: whether it is a normalisation layer (one of :data:`NORMS` or their
      nnx counterparts, subclasses included).
  """

  path: tuple[str, ...]
  method: str
  kind: str
  param_names: tuple[str, ...]
  stack: tuple[int, int] | None
  has_signal: bool
  has_stats: bool
  in_shape: tuple[int, ...] | None = None
  out_shape: tuple[int, ...] | None = None
  is_dense: bool = False
  is_norm: bool = False

  @property
  def key(self) -> str:
    """The perturbation's name inside the module's collection."""
    return SIGNAL if self.method == "__call__" else f"{SIGNAL}:{self.method}"

  def names(self) -> list[str]:
    """One name per layer (:func:`layer_names`), ``:method`` added for other methods."""
    suffix = "" if self.method == "__call__" else f":{self.method}"
    return [name + suffix for name in layer_names(self.path, self.stack)]

  def feeds(self, other: "Row") -> bool:
    """Whether this module's output is, by shape, the next module's input (a chain)."""
    return self.out_shape is not None and self.out_shape == other.in_shape

  @property
  def weight_names(self) -> tuple[str, ...]:
    """The parameters whose norm is the layer's weight norm: all but biases, if any remain."""
    weights = tuple(n for n in self.param_names if n != "bias")
    return weights or self.param_names


@dataclasses.dataclass(frozen=True)
class Trace:
  """The probed structure of one model at one input shape.

  Attributes:
    rows: the probed module calls, in execution order (as each call returns,
      which is where its output, and so its signal, sits).
    modules: every module path the run called, in the order the calls
      returned (a module after its children, as :attr:`rows` are ordered).
    stacks: ``(root path, number of layers)`` of every scanned stack: the
      outermost module that sees its parameters without the layer axis.
  """

  rows: tuple[Row, ...]
  modules: tuple[tuple[str, ...], ...] = ()
  stacks: tuple[tuple[tuple[str, ...], int], ...] = ()

  def stack_of(self, path: Sequence[str]) -> tuple[int, int] | None:
    """``(index of the stack's component in path, layers)`` if ``path`` sits in a stack."""
    path = tuple(path)
    for root, length in self.stacks:
      if path[:len(root)] == root:
        return len(root) - 1, length
    return None

  def position(self, path: Sequence[str]) -> int | None:
    """Where the module at ``path`` finished running, among :attr:`modules`."""
    try:
      return self.modules.index(tuple(path))
    except ValueError:
      return None

  def layers(self) -> list[tuple[str, Row, int | None]]:
    """``(name, row, layer index in its stack or None)``, in execution order.

    A scanned stack runs its body once per layer, so its rows repeat per layer:
    layer 0 of every module of the body, then layer 1, and so on.
    """
    out, i = [], 0
    while i < len(self.rows):
      row = self.rows[i]
      if row.stack is None:
        out.append((row.names()[0], row, None))
        i += 1
        continue
      root = row.path[:row.stack[0] + 1]
      j = i
      while (j < len(self.rows) and self.rows[j].stack is not None
             and self.rows[j].path[:self.rows[j].stack[0] + 1] == root):
        j += 1
      body = self.rows[i:j]
      for layer in range(row.stack[1]):
        out += [(r.names()[layer], r, layer) for r in body]
      i = j
    return out

  def names(self) -> list[str]:
    return [name for name, _, _ in self.layers()]

  def unread(self) -> frozenset[tuple[tuple[str, ...], str]]:
    """``(path, method)`` of the rows whose input is no previous layer's output (by shape)."""
    layers = self.layers()
    fed = {(cur.path, cur.method) for (_, prev, _), (_, cur, _) in zip(layers, layers[1:])
           if prev.feeds(cur)}
    return frozenset((r.path, r.method) for r in self.rows) - fed


def _direct_params(module: nn.Module) -> dict[str, Any]:
  if module.scope is None:
    return {}
  params = module.scope.variables().get("params", {})
  return {k: v for k, v in params.items() if not isinstance(v, Mapping)}


def subtree(tree: Mapping[str, Any], path: Sequence[str]) -> Any:
  """``tree[path[0]][path[1]]…``, or None where the path is absent."""
  for k in path:
    if not isinstance(tree, Mapping) or k not in tree:
      return None
    tree = tree[k]
  return tree


def _leading_axes(module: nn.Module, outer_params: Mapping[str, Any]) -> int:
  """How many axes the params tree holds beyond what the module sees (a stack's layer axis)."""
  if module.scope is None:
    return 0
  inner = jax.tree.leaves(module.scope.variables().get("params", {}))
  outer = jax.tree.leaves(subtree(outer_params, module.path))
  if not inner or len(inner) != len(outer):
    return 0
  return jnp.ndim(outer[0]) - jnp.ndim(inner[0])


def is_float_tree(tree: Any) -> bool:
  """Whether ``tree`` has leaves and every one is a float (or complex) array: probe-able."""
  leaves = jax.tree.leaves(tree)
  return bool(leaves) and all(
      hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.inexact) for a in leaves)


def input_stats(x: jax.Array, out: Any, is_data: bool, read: bool = True) -> dict[str, jax.Array]:
  r"""What a module's input says about the activation before it, and whether its output is finite.

  For an input :math:`x` of shape ``(..., units)`` (every leading axis counts
  as an example: batch, positions, pixels):

  * ``dead``: fraction of units with :math:`x = 0` on every example;
  * ``zero``: fraction of entries exactly 0 (ReLU's signature; a sigmoid never
    outputs an exact 0);
  * ``min``, ``max``: the range, which tells a bounded activation's regime;
  * ``saturated_tanh`` / ``saturated_sigmoid``: fraction of entries, among live
    units, with :math:`\phi'/\max\phi' < 0.05` if :math:`x = \tanh(a)`
    (:math:`1 - x^2`) or :math:`x = \sigma(a)` (:math:`4x(1-x)`);
  * ``finite_in``, ``finite_out``; ``is_data``: the input is the model's own input
    (then only ``finite_in`` is read from it, the rest is NaN; likewise, with
    ``read=False``, for an input that no previous module's output is);
  * ``q_out``: :math:`\overline{y^2}` of the output (a pre-activation's length
    :math:`q^l` in mean-field theory).
  """
  nan = jnp.asarray(jnp.nan, jnp.float32)
  leaves = [jax.lax.stop_gradient(a).astype(jnp.float32) for a in jax.tree.leaves(out)]
  finite_out = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a)) for a in leaves]))
  stats = {"finite_out": finite_out, "is_data": jnp.asarray(is_data),
           "q_out": jnp.mean(leaves[0] ** 2)}
  unread = {"dead": nan, "zero": nan, "min": nan, "max": nan, "saturated_tanh": nan,
            "saturated_sigmoid": nan}
  if not (hasattr(x, "ndim") and x.ndim >= 1 and jnp.issubdtype(x.dtype, jnp.inexact)):
    return {**stats, **unread, "finite_in": jnp.asarray(True)}
  x = jax.lax.stop_gradient(x).astype(jnp.float32)
  if is_data or not read:  # no activation's output: only whether it is finite
    return {**stats, **unread, "finite_in": jnp.all(jnp.isfinite(x))}
  examples = tuple(range(x.ndim - 1))
  dead_units = jnp.all(x == 0, axis=examples)
  live = jnp.broadcast_to(~dead_units, x.shape)
  frac = lambda m: jnp.mean((m & live).astype(jnp.float32))  # noqa: E731
  return {**stats,
          "dead": jnp.mean(dead_units.astype(jnp.float32)),
          "zero": jnp.mean((x == 0).astype(jnp.float32)),
          "min": jnp.min(x), "max": jnp.max(x),
          "saturated_tanh": frac(1.0 - x**2 < SATURATION_THRESHOLD),
          "saturated_sigmoid": frac(4.0 * x * (1.0 - x) < SATURATION_THRESHOLD),
          "finite_in": jnp.all(jnp.isfinite(x))}


@dataclasses.dataclass
class _Recorder:
  """The interceptor's state for one traced call of ``model.apply``."""

  outer_params: Mapping[str, Any]
  data_ids: frozenset[int]
  record_stats: bool = True
  unread: frozenset[tuple[tuple[str, ...], str]] = frozenset()  # inputs no module's output is
  seen: dict[tuple[tuple[str, ...], str], dict[str, Any]] = dataclasses.field(default_factory=dict)
  leads: dict[tuple[str, ...], int] = dataclasses.field(default_factory=dict)
  returned: dict[tuple[str, ...], None] = dataclasses.field(default_factory=dict)  # ordered set

  def __call__(self, next_fun, args, kwargs, context):
    module, method = context.module, context.method_name
    if method == "setup" or module.scope is None:
      return next_fun(*args, **kwargs)
    lead = _leading_axes(module, self.outer_params)
    self.leads[module.path] = max(lead, self.leads.get(module.path, 0))
    out = next_fun(*args, **kwargs)
    self.returned.setdefault(module.path)
    direct = _direct_params(module)
    if not direct or not is_float_tree(out):
      return out
    key = (module.path, method)
    x = args[0] if args else None
    if key not in self.seen:
      self.seen[key] = {"kind": type(module).__name__, "params": tuple(direct), "lead": lead,
                        "is_dense": isinstance(module, nn.Dense),
                        "is_norm": isinstance(module, NORMS),
                        "in_shape": tuple(x.shape) if hasattr(x, "shape") else None,
                        "out_shape": tuple(jax.tree.leaves(out)[0].shape)}
    if tuple(jax.tree.leaves(out)[0].shape) != self.seen[key]["out_shape"]:
      return out  # a shared module called again at another shape: one perturbation per module
    name = SIGNAL if method == "__call__" else f"{SIGNAL}:{method}"
    if self.record_stats:
      module.sow(PERTURBATIONS, f"{STATS}:{method}",
                 input_stats(x, out, id(x) in self.data_ids, key not in self.unread),
                 reduce_fn=lambda _, new: new, init_fn=lambda: None)
    return module.perturb(name, out)

  def stacks(self) -> tuple[tuple[tuple[str, ...], int], ...]:
    """Stack roots: modules with a layer axis whose parent has none."""
    roots = []
    for path, lead in self.leads.items():
      if lead > 1:
        raise ValueError(f"module {'/'.join(path)} sits in nested scanned stacks "
                         f"({lead} layer axes); the probe expands one")
      if lead == 1 and not any(path[:k] in self.leads and self.leads[path[:k]] >= 1
                               for k in range(1, len(path))):
        leaf = jax.tree.leaves(subtree(self.outer_params, path))[0]
        roots.append((path, int(leaf.shape[0])))
    return tuple(roots)

  def trace(self, collection: Mapping[str, Any]) -> Trace:
    """What the run showed; ``collection``: the 'perturbations' after the call."""
    partial = Trace((), tuple(self.returned), self.stacks())
    rows = []
    for (path, method), info in self.seen.items():
      stack = partial.stack_of(path)
      own = subtree(collection, path) or {}
      key = SIGNAL if method == "__call__" else f"{SIGNAL}:{method}"
      rows.append(Row(path, method, info["kind"], info["params"], stack,
                      has_signal=key in own, has_stats=f"{STATS}:{method}" in own,
                      in_shape=info["in_shape"], out_shape=info["out_shape"],
                      is_dense=info["is_dense"], is_norm=info["is_norm"]))
    return dataclasses.replace(partial, rows=tuple(rows))


def _apply_kwargs(rngs, mutable) -> tuple[dict[str, Any], list[str]]:
  if mutable is True:
    raise ValueError("mutable=True is not supported by the probe; name the collections, "
                     "e.g. mutable=['batch_stats']")
  user = [] if mutable is False or mutable is None else (
      [mutable] if isinstance(mutable, str) else list(mutable))
  return ({} if rngs is None else {"rngs": rngs}), user


def _probed_apply(model: nn.Module, variables: Mapping[str, Any], x: Any, perturbations: Any,
                  *, rngs=None, mutable=False, stats: bool = True,
                  unread: frozenset[tuple[tuple[str, ...], str]] = frozenset(),
                  **kwargs) -> tuple[Any, Any, _Recorder]:
  """``model.apply`` under the probe: (output, the 'perturbations' collection after, recorder).

  The output is the model's own (the updates of ``mutable`` collections, such as
  BatchNorm's running statistics, are dropped: a measurement does not train).
  """
  extra, user = _apply_kwargs(rngs, mutable)
  recorder = _Recorder(variables.get("params", {}), frozenset(id(a) for a in jax.tree.leaves(x)),
                       stats, unread)
  full = dict(variables)
  if perturbations is not None:
    full[PERTURBATIONS] = perturbations
  with nn.intercept_methods(recorder):
    out, state = model.apply(full, x, mutable=[*user, PERTURBATIONS], **extra, **kwargs)
  return out, state.get(PERTURBATIONS, {}), recorder


def _split(collection: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """The collection -> (perturbations, stats): the probe's statistics sit beside the signals."""
  def walk(tree, keep_stats):
    out = {}
    for k, v in tree.items():
      if isinstance(v, Mapping) and not k.startswith(STATS):
        sub = walk(v, keep_stats)
        if sub:
          out[k] = sub
      elif k.startswith(STATS) == keep_stats:
        out[k] = v
    return out
  return walk(collection, False), walk(collection, True)


@dataclasses.dataclass(frozen=True)
class Probe:
  """A model, its apply arguments and its probed structure at one input shape.

  Build it with :func:`trace`; call :meth:`value_and_grad` (jit-able) to measure.
  """

  model: nn.Module
  trace: Trace
  perturbation_shapes: Any
  rngs: Any = None
  mutable: Any = False
  apply_kwargs: tuple[tuple[str, Any], ...] = ()

  def zeros(self) -> Any:
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self.perturbation_shapes)

  def value_and_grad(self, variables: Mapping[str, Any], x: Any,
                     loss_fn: Callable[[Any], jax.Array], *,
                     stats: bool = True) -> tuple[jax.Array, dict[str, Any]]:
    r"""Loss, :math:`\partial L/\partial \theta` and :math:`\partial L/\partial y_m` in one backward pass.

    Args:
      variables: the model's variables (the probed ones' structure).
      x: an input batch of the probed shape.
      loss_fn: ``output -> scalar``.
      stats: also record every module's input statistics (dead and saturated
        units, ranges, finiteness). They cost little to run but add compile
        time (``benchmarks/diagnose.py`` measures both, with and without).

    Returns:
      ``(loss, {"params": param grads, "signal": perturbation grads (shaped
      like the model's perturbations, the probe's under :data:`SIGNAL`),
      "stats": input statistics (:func:`input_stats`) per module})``.
    """
    def loss(params, perturbations):
      v = {**variables, "params": params}
      out, collection, _ = _probed_apply(self.model, v, x, perturbations, rngs=self.rngs,
                                         mutable=self.mutable, stats=stats,
                                         unread=self.trace.unread(), **dict(self.apply_kwargs))
      return loss_fn(out), _split(collection)[1]

    (value, stats), (g_params, g_signal) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        variables["params"], self.zeros())
    return value, {"params": g_params, "signal": g_signal, "stats": stats}


def trace(model: nn.Module, variables: Mapping[str, Any], x: Any, *, rngs: Any = None,
          mutable: Any = False, **apply_kwargs) -> Probe:
  """Finds the probed structure of ``model.apply(variables, x, **apply_kwargs)``, without FLOPs.

  Args:
    model: a ``flax.linen.Module``, exactly as written.
    variables: from ``model.init`` (arrays or ``jax.ShapeDtypeStruct``).
    x: the input batch, leading batch axis.
    rngs: passed to ``apply`` (e.g. ``{'dropout': key}``).
    mutable: passed to ``apply`` (e.g. ``['batch_stats']`` for BatchNorm in
      train mode); the output is then ``(y, state)`` and the probe uses ``y``.
    **apply_kwargs: further arguments of the model's ``__call__`` (``train=True``).

  Raises:
    ValueError: for a model that is not a linen Module, variables without
      ``'params'``, or a model with no module that owns parameters.
  """
  if not isinstance(model, nn.Module):
    raise ValueError(f"model must be a flax.linen.Module (for nnx use jaxgrad.diagnose); "
                     f"got {type(model).__name__}")
  if not isinstance(variables, Mapping) or "params" not in variables:
    got = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
    raise ValueError(f"variables must be model.init's dict with a 'params' collection; got {got}")
  _apply_kwargs(rngs, mutable)
  box = {}

  def shapes(variables, x):
    _, collection, recorder = _probed_apply(model, variables, x, None, rngs=rngs,
                                            mutable=mutable, **apply_kwargs)
    box["recorder"] = recorder
    return collection

  collection = jax.eval_shape(shapes, variables, x)
  found = box["recorder"].trace(collection)
  if not found.rows:
    raise ValueError(f"{type(model).__name__} ran no module that owns parameters; "
                     "nothing to probe")
  return Probe(model, found, _split(collection)[0], rngs, mutable,
               tuple(sorted(apply_kwargs.items())))


def units_after(trace: Trace, stats: Mapping[str, Any]) -> dict[str, jax.Array]:
  """Per layer, the fraction of dead units after it, from the probe's input statistics; jit-able.

  A unit after layer :math:`l` is dead when it is 0 on every example of the
  batch at the next module's input; read only where layer :math:`l`'s output
  is that input (:meth:`Row.feeds`) and that input is not the model's own.

  Args:
    trace: the probed structure (``probe.trace(...).trace``).
    stats: ``Probe.value_and_grad(...)[1]["stats"]``.

  Returns:
    ``{layer name: dead fraction}``, NaN where the input is the data.
  """
  layers = trace.layers()
  out = {}
  for (name, row, _), (_, nxt, layer) in zip(layers, layers[1:]):
    if not (row.feeds(nxt) and nxt.has_stats):
      continue
    s = subtree(stats, nxt.path)[f"{STATS}:{nxt.method}"]
    dead, is_data = s["dead"], s["is_data"]
    if layer is not None:
      dead, is_data = dead[..., layer], is_data[..., layer]
    out[name] = jnp.where(is_data, jnp.nan, dead)
  return out


def row_values(tree: Mapping[str, Any], row: Row, leaf: str | Sequence[str],
               reduce: Callable[[jax.Array], jax.Array]) -> jax.Array | None:
  """``reduce`` of the row's leaves named ``leaf`` (concatenated), one value per layer of a stack.

  Returns None where the tree holds nothing for the row.
  """
  sub = subtree(tree, row.path)
  names = (leaf,) if isinstance(leaf, str) else tuple(leaf)
  leaves = [sub[n] for n in names if isinstance(sub, Mapping) and n in sub]
  if not leaves:
    return None
  if row.stack is None:
    return reduce(jnp.concatenate([jnp.ravel(a) for a in leaves]))
  flat = jnp.concatenate([a.reshape(a.shape[0], -1) for a in leaves], axis=1)
  return jax.vmap(reduce)(flat)


def layout(model: nn.Module, x: Any, *, variables: Mapping[str, Any] | None = None,
           rngs: Any = None, mutable: Any = False, **apply_kwargs) -> Trace:
  """The model's execution order and scanned stacks, for :func:`jaxgrad.diagnostics.per_layer`.

  Without ``variables`` the model is initialised abstractly (``jax.eval_shape``
  of ``model.init``: no FLOPs, no memory), so this is cheap enough to call
  once outside a jitted training step.

  >>> import jax, jax.numpy as jnp
  >>> from jaxgrad.models import DeepMLP
  >>> model = DeepMLP(depth=4, width=8, out_features=1)
  >>> layout(model, jnp.ones((2, 5))).stacks
  ((('hidden', 'layers'), 2),)
  """
  if variables is None:
    init_rngs = {"params": jax.random.key(0), **(rngs or {})}
    variables = jax.eval_shape(lambda inp: model.init(init_rngs, inp, **apply_kwargs), x)
  return trace(model, variables, x, rngs=rngs, mutable=mutable, **apply_kwargs).trace
