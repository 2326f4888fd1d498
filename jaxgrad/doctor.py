r"""``python -m jaxgrad.doctor``: diagnose a named model configuration, layer by layer.

Builds the model, draws a batch, and prints :func:`jaxgrad.diagnostics.diagnose`'s
per-layer verdicts (healthy / vanishing / exploding / saturated / dead), the
evidence and the remedies, as plain text or JSON::

    python -m jaxgrad.doctor --model mlp --depth 50 --activation sigmoid --init normal_small
    python -m jaxgrad.doctor --depth 20 --activation relu --init gaussian:sigma_w2=8 --json
    python -m jaxgrad.doctor --depth 10 --activation relu --bias-init constant:value=-3
    python -m jaxgrad.doctor --data digits --depth 30 --activation tanh --init xavier_normal

Initializers are named as in :mod:`jaxgrad.initializers`, with keyword
arguments after a colon: ``name:key=value,key=value``. The mean-field
:math:`\chi_1` of a Gaussian initialisation is printed beside the verdict.
"""

import argparse
import json
import os
import sys
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from jaxgrad import activations, data, initializers, monitoring, theory  # noqa: E402
from jaxgrad.diagnostics.diagnose import diagnose, format_report  # noqa: E402
from jaxgrad.models import NORMS, DeepMLP  # noqa: E402

MODELS = ("mlp",)
DATA = ("gaussian", "digits", "mnist1d")
# sigma_w^2 of the named initializers that are Gaussian with variance sigma_w^2 / fan_in.
_SIGMA_W2 = {"he_normal": 2.0, "lecun_normal": 1.0}


def parse_init(spec: str) -> tuple[str, dict[str, float]]:
  """``'gaussian:sigma_w2=8'`` -> ``('gaussian', {'sigma_w2': 8.0})``; validated by name.

  Raises:
    ValueError: naming the bad part and the valid choices.
  """
  name, _, rest = spec.partition(":")
  kwargs = {}
  for item in filter(None, rest.split(",")):
    key, eq, value = item.partition("=")
    try:
      kwargs[key.strip()] = float(value)
    except ValueError:
      raise ValueError(f"bad initializer argument {item!r} in {spec!r}; expected key=number") from None
    if not eq:
      raise ValueError(f"bad initializer argument {item!r} in {spec!r}; expected key=number")
  initializers.get(name, **kwargs)  # raises naming the valid names / arguments
  return name, kwargs


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m jaxgrad.doctor", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="mlp", choices=MODELS)
  p.add_argument("--depth", type=int, default=20, help="Dense layers, input and output included")
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--activation", default="relu", help=f"one of {', '.join(activations.names())}")
  p.add_argument("--init", default="he_normal", help="kernel initializer, name[:key=value,...]")
  p.add_argument("--bias-init", default="zeros", help="bias initializer, name[:key=value,...]")
  p.add_argument("--norm", default="none", choices=["none", *[n for n in NORMS if n]])
  p.add_argument("--residual", action="store_true")
  p.add_argument("--data", default="gaussian", choices=DATA,
                 help="gaussian: x ~ N(0, I) with 16 features and random labels")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", action="store_true", help="print the report as JSON")
  return p


def _batch(name: str, size: int, key: jax.Array) -> tuple[jax.Array, jax.Array, int]:
  if name == "gaussian":
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (size, 16)), jax.random.randint(ky, (size,), 0, 10), 10
  ds = data.load(name)
  x, y = data.sample_batch(key, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), size)
  return x, y, ds.num_classes


def chi1_of(activation: str, init: tuple[str, dict[str, float]]) -> float | None:
  """Mean-field chi_1 at sigma_b^2 = 0 when the init is N(0, sigma_w^2/fan_in), else None."""
  name, kwargs = init
  sigma_w2 = kwargs.get("sigma_w2") if name == "gaussian" else _SIGMA_W2.get(name)
  if sigma_w2 is None:
    return None
  return float(theory.chi1(activation, sigma_w2, 0.0))


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Builds the model and batch that ``args`` names and returns the report."""
  kernel_init, bias_init = parse_init(args.init), parse_init(args.bias_init)
  activations.get(args.activation)
  model = DeepMLP(depth=args.depth, width=args.width, out_features=1, activation=args.activation,
                  kernel_init=kernel_init, bias_init=bias_init,
                  norm=None if args.norm == "none" else args.norm, residual=args.residual)
  k_data, k_init = jax.random.split(jax.random.key(args.seed))
  x, y, classes = _batch(args.data, args.batch, k_data)
  model = model.clone(out_features=classes)
  variables = jax.jit(model.init)(k_init, x)
  loss_fn = lambda logits, labels: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
      logits, labels).mean()
  outputs = None
  if args.activation in monitoring.UNIT_STAT_ACTIVATIONS:
    outputs = jax.jit(lambda v, inp: monitoring.mlp_outputs(model, v, inp, train=args.norm == "batch"))(
        variables, x)
  apply_fn = ((lambda v, inp: model.apply(v, inp, True, mutable=["batch_stats"])[0])
              if args.norm == "batch" else model.apply)
  report = diagnose(apply_fn, variables, (x, y), loss_fn, outputs=outputs,
                    activation=args.activation)
  report["model"] = {"model": args.model, "depth": args.depth, "width": args.width,
                     "activation": args.activation, "init": args.init, "bias_init": args.bias_init,
                     "norm": args.norm, "residual": args.residual, "data": args.data,
                     "batch": args.batch, "seed": args.seed,
                     "chi1": chi1_of(args.activation, kernel_init)}
  return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = _parser()
  args = parser.parse_args(argv)
  for flag, value, low in (("--depth", args.depth, 2), ("--width", args.width, 1),
                           ("--batch", args.batch, 2)):
    if value < low:
      parser.error(f"{flag} must be >= {low}, got {value}")
  try:
    report = run(args)
  except ValueError as e:  # unknown activation / initializer names, bad arguments
    parser.error(str(e))
  if args.json:
    print(json.dumps(report, indent=1))
  else:
    m = report["model"]
    chi = "" if m["chi1"] is None else f", mean-field chi_1 = {m['chi1']:.4g}"
    print(f"{m['model']} depth {m['depth']} width {m['width']} {m['activation']} "
          f"init {m['init']} bias {m['bias_init']} norm {m['norm']}{chi}\n")
    print(format_report(report))
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
