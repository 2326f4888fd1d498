r"""A per-layer diagnosis of a model on a batch: healthy, vanishing, exploding, saturated or dead.

The evidence, for layer :math:`l` (input to output):

* the backprop signal :math:`s_l = \mathbb{E}_b\|\partial L/\partial z_l\|` at the
  pre-activations (from ``Module.perturb``; without a ``'perturbations''``
  collection, the weight-gradient norm :math:`\|\partial L/\partial W_l\|_F`
  stands in), and its ratio :math:`\rho_l = s_l / s_L` to the output layer's;
* :math:`\|\partial L/\partial W_l\|_F`, :math:`\|W_l\|_F` and their ratio;
* the fraction of dead and of saturated units (:mod:`jaxgrad.monitoring`),
  when the layer's activations are given.

Verdict, first match wins: *dead* (more than half the units dead), *saturated*
(more than half saturated), *exploding* (:math:`\rho_l > 10^2`), *vanishing*
(:math:`\rho_l < 10^{-2}`), else *healthy*. With depth, :math:`\rho_l` moves
geometrically, :math:`\rho_l \approx \chi_1^{-(L-l)/2}` in mean-field theory,
so two decades is about 13 layers at :math:`\chi_1 = 2` and needs no fine tuning.

The remedies follow seed 000 §8.3's workflow (monitor, check weight changes,
clip, re-initialise, add residual connections, reduce depth, check the
optimizer), with §8.1's activation and normalisation advice, ordered for each
verdict by expected effect: the cause first (initialisation, activation), then
architecture, then training-time patches.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad.diagnostics._tree import per_layer
from jaxgrad.diagnostics.gradients import PERTURBATIONS, backprop_signal

VERDICTS = ("healthy", "vanishing", "exploding", "saturated", "dead")
VANISHING_RATIO = 1e-2
EXPLODING_RATIO = 1e2
UNIT_FRACTION = 0.5

REMEDIES = {
    "vanishing": [
        "initialise for the activation: He (relu family) or Xavier (tanh), i.e. chi_1 = 1 "
        "(seed 000 §8.3 step 4, §8.1)",
        "switch to a non-saturating activation: relu / leaky_relu / gelu (§8.1)",
        "add residual connections (§8.3 step 5)",
        "add BatchNorm or LayerNorm (§8.1)",
        "reduce the depth (§8.3 step 6)",
        "use an adaptive optimizer (Adam) and check the learning rate (§8.3 step 7)",
    ],
    "exploding": [
        "initialise with a smaller weight scale, chi_1 = 1: He for relu, Xavier for tanh "
        "(§8.3 step 4)",
        "clip gradients by global norm (§8.3 step 3)",
        "add BatchNorm or LayerNorm (§8.1)",
        "add residual connections with a small residual branch (§8.3 step 5)",
        "lower the learning rate, warm it up (§8.3 step 7, §8.1)",
        "reduce the depth (§8.3 step 6)",
    ],
    "saturated": [
        "initialise with a smaller weight scale (Xavier for tanh / sigmoid) (§8.3 step 4)",
        "switch to a non-saturating activation: relu / leaky_relu / gelu (§8.1)",
        "add BatchNorm or LayerNorm before the activation (§8.1)",
        "lower the learning rate (§8.3 step 7)",
    ],
    "dead": [
        "initialise biases at 0 (or small positive) and weights with He (§8.3 step 4)",
        "switch to leaky_relu / elu / gelu, which keep a gradient for negative inputs (§8.1)",
        "lower the learning rate: large steps kill relu units (§8.3 step 7)",
        "add BatchNorm before the activation (§8.1)",
    ],
    "healthy": [],
}


def _batch_size_matches(variables: Mapping[str, Any], batch_size: int) -> bool:
  leaves = jax.tree.leaves(variables.get(PERTURBATIONS, {}))
  # A scanned stack's perturbation is (layers, batch, ...), others (batch, ...).
  return bool(leaves) and all(batch_size in leaf.shape[:2] for leaf in leaves)


def diagnose(
    apply_fn: Callable[[Mapping[str, Any], jax.Array], jax.Array],
    variables: Mapping[str, Any],
    batch: tuple[jax.Array, jax.Array],
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    outputs: Mapping[str, jax.Array] | None = None,
    activation: str | None = None,
) -> dict[str, Any]:
  r"""Per-layer verdict, evidence and remedies.

  Args:
    apply_fn: ``(variables, x) -> model output`` (e.g. ``model.apply``).
    variables: Flax variables; with a ``'perturbations'`` collection made at
      this batch size, the verdict uses the backprop signal.
    batch: ``(x, y)``.
    loss_fn: ``(model output, y) -> scalar loss``.
    outputs: optional ``{layer: activations (batch, units)}``, keys as in
      :func:`jaxgrad.diagnostics.layer_grad_norms` (e.g.
      :func:`jaxgrad.monitoring.mlp_outputs`), for the dead/saturated verdicts.
    activation: the activation's name (needed with ``outputs``).

  Returns:
    ``{"layers": [{"layer", "verdict", "evidence"}...], "counts": {verdict: n},
    "verdict": overall, "remedies": [...], "signal": "backprop" | "weight_grad"}``;
    the overall verdict is the most frequent non-healthy one (healthy if none).
  """
  from jaxgrad import monitoring  # pylint: disable=import-outside-toplevel

  x, y = batch
  loss = lambda v: loss_fn(apply_fn(v, x), y)  # noqa: E731
  signal_kind = "backprop" if _batch_size_matches(variables, x.shape[0]) else "weight_grad"
  if outputs is not None:
    monitoring.relative_derivative(activation, jnp.zeros(()))  # validates the name

  @jax.jit
  def measure(variables, outputs):
    grads = jax.grad(lambda p: loss({**variables, "params": p}))(variables["params"])
    g = per_layer(grads, "kernel", lambda a: jnp.linalg.norm(a.astype(jnp.float32)))
    w = per_layer(variables["params"], "kernel", lambda a: jnp.linalg.norm(a.astype(jnp.float32)))
    signal = g
    if signal_kind == "backprop":
      raw = backprop_signal(loss, variables)
      signal = {(k if k in g else next((n for n in g if n.startswith(k + "/")), k)): v
                for k, v in raw.items()}
    units = (monitoring.unit_fractions(outputs, activation) if outputs is not None
             else {"dead": {}, "saturated": {}})
    return g, w, signal, units, loss(variables)

  g, w, signal, units, loss_value = jax.tree.map(np.asarray, measure(variables, outputs))
  names = list(g)
  ref = float(signal[names[-1]]) if names[-1] in signal else float(list(signal.values())[-1])
  layers = []
  for name in names:
    s = float(signal.get(name, g[name]))
    with np.errstate(all="ignore"):
      ratio = s / ref if ref > 0 else float("nan")
    ev = {"signal": s, "signal_ratio_to_output": ratio, "grad_norm": float(g[name]),
          "weight_norm": float(w[name]),
          "grad_to_weight": float(g[name]) / float(w[name]) if float(w[name]) > 0 else float("nan")}
    dead, sat = units["dead"].get(name), units["saturated"].get(name)
    if dead is not None:
      ev["dead_fraction"], ev["saturated_fraction"] = float(dead), float(sat)
    ev["finite"] = bool(np.isfinite(s) and np.isfinite(ev["grad_norm"]))
    layers.append({"layer": name, "verdict": _verdict(ev), "evidence": ev})
  counts = {v: sum(l["verdict"] == v for l in layers) for v in VERDICTS}
  bad = [v for v in VERDICTS[1:] if counts[v]]
  overall = max(bad, key=lambda v: (counts[v], -VERDICTS.index(v))) if bad else "healthy"
  return {"layers": layers, "counts": counts, "verdict": overall, "signal": signal_kind,
          "loss": float(loss_value), "remedies": REMEDIES[overall],
          "thresholds": {"vanishing_ratio": VANISHING_RATIO, "exploding_ratio": EXPLODING_RATIO,
                         "unit_fraction": UNIT_FRACTION,
                         "saturation": monitoring.SATURATION_THRESHOLD}}


def _verdict(ev: Mapping[str, Any]) -> str:
  if ev.get("dead_fraction", 0.0) > UNIT_FRACTION:
    return "dead"
  if ev.get("saturated_fraction", 0.0) > UNIT_FRACTION:
    return "saturated"
  ratio = ev["signal_ratio_to_output"]
  if not ev["finite"] or ratio > EXPLODING_RATIO:
    return "exploding"
  if not ratio >= VANISHING_RATIO:  # NaN (a zero output signal) counts as vanishing
    return "vanishing"
  return "healthy"


def format_report(report: Mapping[str, Any]) -> str:
  """The report as plain text: one line per layer, then the remedies."""
  has_units = any("dead_fraction" in l["evidence"] for l in report["layers"])
  head = f"{'layer':<26} {'verdict':<10} {'signal':>10} {'ratio':>10} {'|dW|':>10} {'|dW|/|W|':>10}"
  head += f" {'dead':>6} {'sat':>6}" if has_units else ""
  lines = [head, "-" * len(head)]
  for l in report["layers"]:
    e = l["evidence"]
    line = (f"{l['layer']:<26} {l['verdict']:<10} {e['signal']:>10.3g} "
            f"{e['signal_ratio_to_output']:>10.3g} {e['grad_norm']:>10.3g} {e['grad_to_weight']:>10.3g}")
    if has_units:
      line += f" {e.get('dead_fraction', float('nan')):>6.0%} {e.get('saturated_fraction', float('nan')):>6.0%}"
    lines.append(line)
  counts = ", ".join(f"{v}: {n}" for v, n in report["counts"].items() if n)
  lines += ["", f"signal: {report['signal']} (ratio = signal / output layer's; vanishing < "
                f"{VANISHING_RATIO:g}, exploding > {EXPLODING_RATIO:g}); loss {report['loss']:.4g}",
            f"verdict: {report['verdict']} ({counts})"]
  if report["remedies"]:
    lines.append("remedies, in order of expected effect:")
    lines += [f"  {i}. {r}" for i, r in enumerate(report["remedies"], 1)]
  return "\n".join(lines)
