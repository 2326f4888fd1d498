r"""Diagnose any Flax model, as written: where the gradient dies or blows up, and why.

:func:`diagnose` probes every module that owns parameters (:mod:`jaxgrad.probe`
for linen, :mod:`jaxgrad.diagnostics.nnx_probe` for nnx), in execution order,
and reads for module :math:`l`:

* the backprop signal :math:`s_l = \mathbb{E}_b\|\partial L/\partial y_l[b]\|`
  at its output, and its ratio :math:`\rho_l = s_l / s_{\mathrm{out}}` to the
  last module's;
* :math:`\|\partial L/\partial W_l\|_F`, :math:`\|W_l\|_F` and their ratio;
* the units after it (the next module's input, where the two form a chain):
  dead (0 on every example) and saturated (a bounded activation's flat
  regime, :math:`\phi'/\max\phi' < 0.05`), the activation read from the data
  (exact zeros and a range in :math:`[0, \infty)`: ReLU; in :math:`[0, 1]`:
  sigmoid; in :math:`[-1, 1]`: tanh) unless a hint names it;
* in a chain of dense layers, the measured growth :math:`(s_l/s_{l+1})^2`
  beside the mean-field :math:`\chi_1 = \sigma_w^2\,\mathbb{E}[\phi'(\sqrt{q_l}
  z)^2]` of the next layer's measured weight variance and the measured
  pre-activation length :math:`q_l` (Poole et al. 2016; Schoenholz et al. 2017).

Verdict, first match wins: non-finite → *exploding*; an exactly zero gradient
with a zero-initialised module downstream (a zero head, a zero BatchNorm scale
closing a residual branch) → *blocked* by that module, not vanishing; more
than half the units dead → *dead*, saturated → *saturated*;
:math:`\rho_l > 10^2` → *exploding*, :math:`\rho_l < 10^{-2}` → *vanishing*;
else *healthy*. :math:`\rho_l` moves geometrically with depth,
:math:`\rho_l \approx \chi_1^{-(L-l)/2}`, so two decades is about 13 layers
at :math:`\chi_1 = 2`.
"""

from collections.abc import Callable, Mapping
import math
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import probe as probe_lib
from jaxgrad import theory
from jaxgrad.diagnostics import nnx_probe
from jaxgrad.diagnostics._dense import dense_variances
from jaxgrad.diagnostics.gradients import example_norm, safe_norm
from jaxgrad.diagnostics.report import VERDICTS, LayerReport, Report

VANISHING_RATIO = 1e-2
EXPLODING_RATIO = 1e2
UNIT_FRACTION = 0.5
ACTIVATION_HINTS = ("relu", "tanh", "sigmoid", "linear")

REMEDIES = {
    "vanishing": [
        ("initialise for the activation so that chi_1 = 1: He for the ReLU family, Xavier or "
         "orthogonal for tanh (He et al. 2015; Glorot & Bengio 2010; Saxe et al. 2014)", None),
        ("switch to a non-saturating activation: relu / leaky_relu / gelu", None),
        ("add residual connections (He et al. 2016)", None),
        ("add BatchNorm or LayerNorm (Ioffe & Szegedy 2015; Ba et al. 2016)", "norm"),
        ("reduce the depth", None),
        ("use an adaptive optimizer (Adam) and check the learning rate", None),
    ],
    "exploding": [
        ("initialise with a smaller weight scale so that chi_1 = 1: He for relu, Xavier for "
         "tanh (He et al. 2015; Glorot & Bengio 2010)", None),
        ("clip gradients by global norm (Pascanu et al. 2013): optax.clip_by_global_norm", None),
        ("add BatchNorm or LayerNorm (Ioffe & Szegedy 2015; Ba et al. 2016)", "norm"),
        ("add residual connections with a small or zero-initialised branch (Goyal et al. 2017)",
         None),
        ("lower the learning rate and warm it up", None),
        ("reduce the depth", None),
    ],
    "saturated": [
        ("initialise with a smaller weight scale (Xavier for tanh / sigmoid)", None),
        ("switch to a non-saturating activation: relu / leaky_relu / gelu", None),
        ("add BatchNorm or LayerNorm before the activation", "norm"),
        ("lower the learning rate", None),
    ],
    "dead": [
        ("initialise biases at 0 (or small positive) and weights with He (He et al. 2015)", None),
        ("switch to leaky_relu / elu / gelu, which keep a gradient for negative inputs", None),
        ("lower the learning rate: large steps kill relu units", None),
        ("add BatchNorm before the activation", "norm"),
    ],
    "blocked": [
        ("nothing to cure: a zero-initialised module passes no gradient upstream at "
         "initialisation by design (zero heads; zero-init residual branches, Goyal et al. "
         "2017) and receives a gradient itself; diagnose again after a few optimizer steps "
         "to see the layers it blocks", None),
    ],
    "healthy": [],
}


def _measure_row(row: probe_lib.Row, params: Any, grads: Mapping[str, Any],
                 batch: int) -> dict[str, jax.Array]:
  """Per-layer arrays (a stack's with a leading layer axis) for one probed row."""
  norm = lambda a: safe_norm(a.astype(jnp.float32))  # noqa: E731
  stacked = row.stack is not None
  out = {"grad": probe_lib.row_values(grads["params"], row, row.weight_names, norm),
         "weight": probe_lib.row_values(params, row, row.weight_names, norm),
         "zero_weight": probe_lib.row_values(params, row, row.weight_names,
                                             lambda a: jnp.all(a == 0))}
  own = probe_lib.subtree(params, row.path)
  if row.is_dense and "kernel" in own:
    out.update((jax.vmap(dense_variances) if stacked else dense_variances)(
        own["kernel"], own.get("bias")))
  if row.has_signal:
    g = probe_lib.subtree(grads["signal"], row.path)[row.key]
    out["signal"] = (jax.vmap(lambda a: example_norm(a, batch))(g) if stacked
                     else example_norm(g, batch))
  if row.has_stats:
    out["stats"] = probe_lib.subtree(grads["stats"], row.path)[f"{probe_lib.STATS}:{row.method}"]
  return out


def _measure(probe: probe_lib.Probe, loss_fn, variables, x):
  loss, grads = probe.value_and_grad(variables, x, loss_fn)
  batch = jax.tree.leaves(x)[0].shape[0]
  return loss, [_measure_row(r, variables["params"], grads, batch) for r in probe.trace.rows]


def _layer_values(measured: list[dict[str, Any]], trace: probe_lib.Trace) -> list[dict[str, Any]]:
  """One dict of Python numbers per layer, in execution order."""
  index = {id(r): i for i, r in enumerate(trace.rows)}
  out = []
  for name, row, layer in trace.layers():
    m = measured[index[id(row)]]
    pick = lambda a: float(np.asarray(a if layer is None else a[layer]))  # noqa: E731
    values = {"name": name, "row": row,
              **{k: pick(v) for k, v in m.items() if k != "stats"}}
    if "stats" in m:
      values["stats"] = {k: pick(v) for k, v in m["stats"].items()}
    out.append(values)
  return out


def _regime(stats: Mapping[str, float], hint: str | None) -> str | None:
  """The activation that produced an input, as its values show it (or as hinted)."""
  if hint is not None:
    return hint
  if not all(math.isfinite(stats[k]) for k in ("min", "max", "zero")):
    return None
  if stats["min"] >= 0 and stats["zero"] >= 0.05:
    return "relu"
  if stats["min"] >= 0 and stats["max"] <= 1:
    return "sigmoid"
  if stats["min"] >= -1 and stats["max"] <= 1:
    return "tanh"
  return None


def _units_after(values: list[dict[str, Any]], hint: str | None) -> None:
  """Fills ``dead``, ``saturated``, ``activation``, ``growth``, ``chi1`` from the next layer."""
  for cur, nxt in zip(values, values[1:] + [None]):
    cur.update(dead=math.nan, saturated=math.nan, activation=None, growth=None, chi1=None)
    stats = nxt.get("stats") if nxt is not None else None
    if stats is None or stats["is_data"] or not cur["row"].feeds(nxt["row"]):
      continue
    act = _regime(stats, hint)
    sat = {"tanh": stats["saturated_tanh"], "sigmoid": stats["saturated_sigmoid"]}
    cur.update(dead=stats["dead"], saturated=sat.get(act, 0.0), activation=act)
    if (act is not None and "sigma_w2" in nxt and "signal" in cur and "signal" in nxt
        and cur.get("stats") is not None and nxt["signal"] > 0):
      q = cur["stats"]["q_out"]
      cur["growth"] = (cur["signal"] / nxt["signal"]) ** 2
      mu = 1.0 if act == "linear" else float(theory.derivative_moment(act, jnp.asarray(q)))
      cur["chi1"] = nxt["sigma_w2"] * mu


def _zero_downstream(values: list[dict[str, Any]]) -> list[str | None]:
  """Per layer, the nearest later module whose weights are all zero (None if none): one pass."""
  out, nearest = [], None
  for v in reversed(values):
    out.append(nearest)
    if v["zero_weight"] >= 1:
      nearest = v["name"]
  return out[::-1]


def _verdicts(values: list[dict[str, Any]]) -> list[LayerReport]:
  kinds = ["output" if "signal" in v else "weight_grad" for v in values]
  refs = {}
  for v, kind in zip(values, kinds):
    value = v["signal"] if kind == "output" else v["grad"]
    if math.isfinite(value) and value > 0:
      refs[kind] = value  # the last one of each kind: the output end
  zero_downstream = _zero_downstream(values)
  layers = []
  for i, (v, kind) in enumerate(zip(values, kinds)):
    value = v["signal"] if kind == "output" else v["grad"]
    finite = (math.isfinite(value) and math.isfinite(v["grad"])
              and bool(v.get("stats", {}).get("finite_out", True)))
    ratio = value / refs[kind] if kind in refs and math.isfinite(value) else math.nan
    cause = zero_downstream[i] if value == 0 and v["grad"] == 0 else None
    if not finite:
      verdict = "exploding"
    elif cause is not None:
      verdict = "blocked"
    elif v["dead"] > UNIT_FRACTION:
      verdict = "dead"
    elif v["saturated"] > UNIT_FRACTION:
      verdict = "saturated"
    elif ratio > EXPLODING_RATIO:
      verdict = "exploding"
    elif not ratio >= VANISHING_RATIO:
      verdict = "vanishing"
    else:
      verdict = "healthy"
    layers.append(LayerReport(
        v["name"], v["row"].kind, verdict, v.get("signal", math.nan), kind, ratio, v["grad"],
        v["weight"], v["dead"], v["saturated"], v["activation"], v["growth"], v["chi1"], cause,
        finite))
  return layers


def _first_nonfinite(values: list[dict[str, Any]]) -> dict[str, str] | None:
  for v in values:
    stats = v.get("stats")
    if stats is not None and not stats["finite_in"] and stats["is_data"]:
      return {"module": v["name"], "direction": "input"}
    if stats is not None and not stats["finite_out"]:
      return {"module": v["name"], "direction": "forward"}
  for v in reversed(values):
    if not math.isfinite(v.get("signal", 0.0)) or not math.isfinite(v["grad"]):
      return {"module": v["name"], "direction": "backward"}
  return None


def _overall(layers: list[LayerReport]) -> str:
  counts = {v: sum(l.verdict == v for l in layers) for v in VERDICTS}
  bad = [v for v in VERDICTS[1:-1] if counts[v]]
  if bad:
    return max(bad, key=lambda v: (counts[v], -VERDICTS.index(v)))
  return "blocked" if counts["blocked"] else "healthy"


def _notes(layers: list[LayerReport]) -> list[str]:
  notes = []
  w_only = [l.name for l in layers if l.signal_kind == "weight_grad"]
  if w_only:
    notes.append(f"{len(w_only)} layers ({w_only[0]} …) sit in an nn.scan (or nn.vmap) without "
                 "'perturbations' in its variable_axes: no signal there, their verdict and ratio "
                 "rest on the weight gradient, against the last such layer")
  causes = sorted({l.cause for l in layers if l.cause})
  for cause in causes:
    n = sum(l.cause == cause for l in layers)
    notes.append(f"{n} layers are blocked at initialisation by the zero-initialised {cause}")
  return notes


def _remedies(verdict: str, has_norm: bool) -> tuple[str, ...]:
  """The verdict's remedies, without adding a norm to a model that has one (by type)."""
  has = {"norm"} if has_norm else set()
  return tuple(text for text, needs_absent in REMEDIES[verdict] if needs_absent not in has)


def report_from_values(values: list[dict[str, Any]], loss: float,
                       hint: str | None = None) -> Report:
  """The :class:`Report` from per-layer measurements (shared by the linen and nnx probes)."""
  _units_after(values, hint)
  layers = _verdicts(values)
  overall = _overall(layers)
  has_norm = any(v["row"].is_norm for v in values)
  return Report(tuple(layers), overall, _remedies(overall, has_norm), _first_nonfinite(values),
                loss, tuple(_notes(layers)),
                {"vanishing_ratio": VANISHING_RATIO, "exploding_ratio": EXPLODING_RATIO,
                 "unit_fraction": UNIT_FRACTION,
                 "saturation": probe_lib.SATURATION_THRESHOLD})


def diagnose(model: Any, variables: Mapping[str, Any] | None, x: Any,
             loss_fn: Callable[[Any], jax.Array], *, rngs: Any = None, mutable: Any = False,
             activation: str | None = None, **apply_kwargs) -> Report:
  """Per-layer verdicts, evidence and remedies for a Flax model as written.

  Args:
    model: a ``flax.linen.Module`` exactly as the user wrote it (no
      ``perturb``, no jaxgrad base class), or an ``nnx.Module`` (then
      ``variables`` is None).
    variables: from ``model.init``.
    x: the input batch (leading batch axis).
    loss_fn: ``output -> scalar loss`` (close over the labels).
    rngs, mutable, **apply_kwargs: passed to ``model.apply``, e.g.
      ``mutable=['batch_stats'], train=True`` or ``rngs={'dropout': key}``.
    activation: optional hint (one of :data:`ACTIVATION_HINTS`) for the
      activation between layers, where the data cannot show it.

  Returns:
    A :class:`jaxgrad.diagnostics.report.Report`.

  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> class MLP(nn.Module):
  ...   @nn.compact
  ...   def __call__(self, x):
  ...     return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))
  >>> x = jnp.ones((4, 3)); model = MLP(); v = model.init(jax.random.key(0), x)
  >>> [l.name for l in diagnose(model, v, x, lambda y: jnp.mean(y ** 2)).layers]
  ['Dense_1', 'Dense_0']

  (Execution order: Flax named the outer ``Dense(1)`` first, but the inner
  ``Dense(8)`` runs first.)
  """
  if activation is not None and activation not in ACTIVATION_HINTS:
    raise ValueError(f"activation hint must be one of {ACTIVATION_HINTS} or None, got "
                     f"{activation!r}")
  if not callable(loss_fn):
    raise ValueError(f"loss_fn must be a function output -> scalar, got {type(loss_fn).__name__}")
  if isinstance(model, nnx.Module):
    loss, values = nnx_probe.measure(model, x, loss_fn)
    return report_from_values(values, loss, activation)
  probe = probe_lib.trace(model, variables, x, rngs=rngs, mutable=mutable, **apply_kwargs)
  loss, measured = jax.jit(lambda v, inp: _measure(probe, loss_fn, v, inp))(variables, x)
  measured = jax.tree.map(np.asarray, measured)
  return report_from_values(_layer_values(measured, probe.trace), float(loss), activation)
