r"""Finite-difference gradient check of every model in jaxgrad (seed 000 §6.3).

For each model (tiny widths, float64, a fixed random batch and a squared-error
or cross-entropy loss), :func:`jaxgrad.diagnostics.gradient_check.gradient_check` compares
``jax.grad`` with central differences, tensor by tensor: along every
coordinate for tensors of at most ``--max-coordinates`` entries, along
``--num-directions`` random unit directions otherwise. A negative control, a
DeepMLP whose tanh has a hand-written VJP with the wrong sign (``jax.custom_vjp``),
must fail; every real model must pass with a relative error far below 1e-6.
Directions whose finite difference straddles a ReLU-like kink cannot be checked
by any finite difference; they are counted (``kinks``), not failed (the rule is
in :mod:`jaxgrad.diagnostics.gradient_check`).

The seed's checker loops over every scalar parameter with two forward passes
each; here all directions of all tensors run in one jitted program.

    python -m experiments.gradient_check            # every model, ~1-2 min on 2 cores
    python -m experiments.gradient_check --quick    # fewer directions
    python -m experiments.gradient_check --models mlp_tanh,planted_bug

Writes ``config.json``, ``results.json`` (every tensor's error) and
``errors.png`` under ``--out``.
"""

from collections.abc import Callable
import dataclasses
import pathlib

from experiments import _cli, _config
from jaxgrad import compilation_cache

# Compile time dominates these small programs on CPU (notes in docs/architectures.md).
compilation_cache.prefer_fast_compile()

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import models, plotting  # noqa: E402
from jaxgrad.diagnostics.gradient_check import gradient_check  # noqa: E402
from jaxgrad.models import layers, resnet, transformer  # noqa: E402

F64 = jnp.float64
Builder = Callable[[jax.Array], tuple[Callable, dict]]


@jax.custom_vjp
def tanh_wrong_sign(x: jax.Array) -> jax.Array:
  """tanh whose backward pass has the wrong sign: the planted bug."""
  return jnp.tanh(x)


tanh_wrong_sign.defvjp(lambda x: (jnp.tanh(x), x),
                       lambda x, g: (-g * (1.0 - jnp.tanh(x) ** 2),))


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl="rbg")


def _regression(model, x: jax.Array, *, mutable: bool = False) -> Builder:
  def build(key):
    k_init, k_y = jax.random.split(key)
    variables = jax.jit(model.init)(k_init, x)
    kwargs = dict(train=True, mutable=["batch_stats"]) if mutable else {}
    y = jax.random.normal(k_y, jax.eval_shape(lambda v: _out(model.apply(v, x, **kwargs)),
                                              variables).shape, F64)

    def loss(params):
      return jnp.mean((_out(model.apply({**variables, "params": params}, x, **kwargs)) - y) ** 2)

    return loss, variables["params"]
  return build


def _out(result):
  return result[0] if isinstance(result, tuple) else result


def _classifier(model, tokens: jax.Array, classes: int) -> Builder:
  def build(key):
    variables = jax.jit(model.init)(key, tokens)
    targets = tokens[:, ::-1] % classes

    def loss(params):
      logits = model.apply({"params": params}, tokens)
      return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    return loss, variables["params"]
  return build


def builders() -> dict[str, tuple[Builder, bool]]:
  """name -> (builder, expected to pass). Built lazily: x64 must be on."""
  k = jax.random.key(123)
  vec = jax.random.normal(k, (4, 3), F64)
  img = jax.random.normal(k, (2, 4, 4, 4), F64)
  seq = jax.random.normal(k, (2, 5, 2), F64)
  tok = jax.random.randint(k, (2, 5), 0, 4)
  out = {
      "mlp_tanh": (_regression(models.DeepMLP(4, 6, 2, activation="tanh"), vec), True),
      "mlp_relu_layernorm": (_regression(models.DeepMLP(4, 6, 2, norm="layer"), vec), True),
      "mlp_batchnorm": (_regression(models.DeepMLP(3, 6, 2, norm="batch"), vec, mutable=True),
                        True),
      "resnet": (_regression(resnet.ResNet((1, 1), width=2, num_classes=3), img, mutable=True),
                 True),
      "plainnet": (_regression(resnet.PlainNet((1, 1), width=2, num_classes=3), img,
                               mutable=True), True),
      "resnet_no_bn": (_regression(resnet.ResNet((1, 1), width=2, num_classes=3, norm=False),
                                   img), True),
      "transformer_pre_ln": (_classifier(transformer.Transformer(
          4, 5, 4, d_model=4, depth=2, num_heads=2, d_ff=8, norm_position="pre"), tok, 4), True),
      "transformer_post_ln": (_classifier(transformer.Transformer(
          4, 5, 4, d_model=4, depth=2, num_heads=2, d_ff=8, norm_position="post",
          scale_attention=False), tok, 4), True),
      "reversible_coupling": (_regression(layers.ReversibleCoupling(), img, mutable=True), True),
      "depthwise_separable": (_regression(layers.DepthwiseSeparableConv(4), img, mutable=True),
                              True),
      "dilated_conv": (_regression(layers.DilatedConvBlock(3, dilation=2), img, mutable=True),
                       True),
      "planted_bug": (_regression(models.DeepMLP(4, 6, 2, activation=tanh_wrong_sign), vec),
                      False),
  }
  # Models other issues add to jaxgrad.models, when present. RecurrentNet computes
  # in its param_dtype (the carry), so casting its parameters is not enough.
  if hasattr(models, "ResidualMLP"):
    out["residual_mlp"] = (_regression(models.ResidualMLP(2, 6, 2), vec), True)
  if hasattr(models, "RecurrentNet"):
    for cell in ("simple", "lstm", "gru"):
      out[f"rnn_{cell}"] = (_regression(
          models.RecurrentNet(cell=cell, hidden=3, param_dtype=F64), seq), True)
  return out


MODEL_NAMES = ("mlp_tanh", "mlp_relu_layernorm", "mlp_batchnorm", "resnet", "plainnet",
               "resnet_no_bn", "transformer_pre_ln", "transformer_post_ln",
               "reversible_coupling", "depthwise_separable", "dilated_conv", "residual_mlp",
               "rnn_simple", "rnn_lstm", "rnn_gru", "planted_bug")


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  models: tuple[str, ...] = _config.setting(MODEL_NAMES, "models to check", choices=MODEL_NAMES)
  num_directions: int = _config.setting(4, at_least=1)
  max_coordinates: int = _config.setting(16, at_least=0)
  epsilon: float = _config.setting(1e-6, above=0)
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(num_directions=2, max_coordinates=8)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(models=("mlp_tanh", "transformer_post_ln", "reversible_coupling",
                       "planted_bug"), num_directions=2, max_coordinates=4)


def run(config: Config) -> dict:
  cases = {}
  with jax.enable_x64(True):
    available = builders()
    todo = [m for m in config.models if m in available]
    for i, name in enumerate(_cli.progress(todo, desc="gradient checks")):
      build, expected = available[name]
      loss, params = build(_key(config.seed + i))
      checks = gradient_check(
          loss, params, key=jax.random.key(config.seed), num_directions=config.num_directions,
          max_coordinates=config.max_coordinates, epsilon=config.epsilon)
      passed = all(c.passed for c in checks.values())
      cases[name] = {
          "expected_to_pass": expected, "passed": passed, "as_expected": passed == expected,
          "max_error": max(c.error for c in checks.values()),
          "kinks": sum(c.kinks for c in checks.values()),
          "num_parameters": int(sum(np.size(a) for a in jax.tree.leaves(params))),
          "tensors": {k: c._asdict() for k, c in checks.items()},
      }
  results = {"config": config, "cases": cases,
             "skipped": [m for m in config.models if m not in cases],
             "all_as_expected": all(c["as_expected"] for c in cases.values())}
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  cases = results["cases"]
  fig, axes = plotting.figure(1, 1, panel=(6.0, 0.28 * len(cases) + 1.2))
  ax = axes[0, 0]
  for row, (name, case) in enumerate(cases.items()):
    errors = np.asarray([t["error"] for t in case["tensors"].values()], float)
    errors = np.maximum(errors, 1e-16)
    color = "C0" if case["expected_to_pass"] else "C3"
    ax.scatter(errors, np.full(errors.shape, row), s=10, color=color, alpha=0.7)
  ax.axvline(1e-6, color="k", linestyle="--", linewidth=0.8, label="rtol 1e-6")
  ax.set_yticks(range(len(cases)), list(cases))
  ax.invert_yaxis()
  ax.set_xscale("log")
  ax.set_xlabel("relative error per tensor (checked directions), FD (float64) vs jax.grad")
  ax.set_title("gradient check (red: planted wrong-sign VJP)")
  ax.legend()
  plotting.save(fig, out_dir / "errors.png")


def summary(results: dict) -> str:
  rows = [[name, c["num_parameters"], len(c["tensors"]), c["max_error"], c["kinks"],
           "pass" if c["passed"] else "FAIL", "yes" if c["as_expected"] else "NO"]
          for name, c in results["cases"].items()]
  table = _cli.format_table(["model", "params", "tensors", "max rel error", "kinks (unchecked)",
                             "verdict", "as expected"], rows)
  if results["skipped"]:
    table += f"\n(not in this checkout: {', '.join(results['skipped'])})"
  return table


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
