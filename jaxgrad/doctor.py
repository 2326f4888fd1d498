r"""``python -m jaxgrad.doctor``: diagnose a model, layer by layer, in execution order.

Your own model, through a factory::

    python -m jaxgrad.doctor --model mypkg.models:make_for_doctor --plot flow.png
    python -m jaxgrad.doctor --model ./train.py:make_for_doctor --json

The factory is called with no arguments and returns what
:func:`jaxgrad.diagnose` needs, as a mapping (or a tuple in this order)::

    {"model": model,          # flax.linen.Module as written, or an nnx.Module
     "variables": variables,  # model.init(...) (None for nnx)
     "x": x,                  # an input batch, leading batch axis
     "loss_fn": loss_fn,      # output -> scalar (close over the labels)
     "apply_kwargs": {...}}   # optional: rngs, mutable, train=True, ...

A built-in configuration (a ``DeepMLP`` as in the tutorials)::

    python -m jaxgrad.doctor --model mlp --depth 50 --activation sigmoid --init normal_small
    python -m jaxgrad.doctor --depth 20 --activation relu --init gaussian:sigma_w2=8 --json
    python -m jaxgrad.doctor --data digits --depth 30 --activation tanh --init xavier_normal

Initializers are named as in :mod:`jaxgrad.initializers`, with keyword
arguments after a colon: ``name:key=value,key=value``. The mean-field
:math:`\chi_1` of a Gaussian initialisation is printed beside the verdict.
"""

import argparse
from collections.abc import Mapping
import importlib
import importlib.util
import os
import pathlib
import sys
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from jaxgrad import activations, data, files, initializers, theory  # noqa: E402
from jaxgrad.diagnostics.diagnose import diagnose  # noqa: E402
from jaxgrad.diagnostics.report import Report  # noqa: E402
from jaxgrad.models import NORMS, DeepMLP  # noqa: E402

MODELS = ("mlp",)
FACTORY_KEYS = ("model", "variables", "x", "loss_fn", "apply_kwargs")
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
  p.add_argument("--model", default="mlp",
                 help="'mlp' (built in) or your factory, 'pkg.module:function' or 'file.py:function'")
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
  p.add_argument("--json", action="store_true", help="print the report as (strict) JSON")
  p.add_argument("--plot", metavar="FILE", help="save the gradient-flow figure (PNG) here")
  return p


def _batch(name: str, size: int, key: jax.Array) -> tuple[jax.Array, jax.Array, int]:
  if name == "gaussian":
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (size, 16)), jax.random.randint(ky, (size,), 0, 10), 10
  ds = data.load(name)
  batch = data.sample_batch(key, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), size)
  return batch.x, batch.y, ds.num_classes


def chi1_of(activation: str, init: tuple[str, dict[str, float]]) -> float | None:
  """Mean-field chi_1 at sigma_b^2 = 0 when the init is N(0, sigma_w^2/fan_in), else None."""
  name, kwargs = init
  sigma_w2 = kwargs.get("sigma_w2") if name == "gaussian" else _SIGMA_W2.get(name)
  if sigma_w2 is None:
    return None
  return float(theory.chi1(activation, sigma_w2, 0.0))


def load_factory(spec: str):
  """``'pkg.module:function'`` or ``'path/file.py:function'`` -> the function.

  Raises:
    ValueError: naming what could not be found.
  """
  module_name, sep, attr = spec.rpartition(":")
  if not sep or not module_name or not attr:
    raise ValueError(f"--model must be one of {MODELS} or 'pkg.module:function', got {spec!r}")
  try:
    if module_name.endswith(".py"):
      path = pathlib.Path(module_name)
      loader = importlib.util.spec_from_file_location(path.stem, path)
      if loader is None or not path.exists():
        raise ValueError(f"--model: no file {module_name!r}")
      module = importlib.util.module_from_spec(loader)
      loader.loader.exec_module(module)
    else:
      module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"--model: cannot import {module_name!r}: {e}") from None
  factory = getattr(module, attr, None)
  if not callable(factory):
    raise ValueError(f"--model: {module_name!r} has no function {attr!r}")
  return factory


def from_factory(spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """Calls the factory ``spec`` names; returns (diagnose's arguments, a description)."""
  got = load_factory(spec)()
  if isinstance(got, tuple) and 4 <= len(got) <= 5:
    got = dict(zip(FACTORY_KEYS, got))
  if not isinstance(got, Mapping) or not {"model", "x", "loss_fn"} <= set(got):
    shape = (f"a mapping with keys {sorted(got)}" if isinstance(got, Mapping)
             else f"{type(got).__name__}{f' of length {len(got)}' if isinstance(got, tuple) else ''}")
    raise ValueError(f"--model {spec}: the factory returned {shape}; expected a mapping with keys "
                     f"{list(FACTORY_KEYS)} ('apply_kwargs' optional; 'variables' None for nnx) "
                     "or a tuple (model, variables, x, loss_fn[, apply_kwargs])")
  unknown = set(got) - set(FACTORY_KEYS)
  if unknown:
    raise ValueError(f"--model {spec}: unknown keys {sorted(unknown)}; expected {list(FACTORY_KEYS)}")
  args = {"model": got["model"], "variables": got.get("variables"), "x": got["x"],
          "loss_fn": got["loss_fn"], **dict(got.get("apply_kwargs") or {})}
  return args, {"model": spec, "class": type(got["model"]).__name__}


def from_config(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
  """The built-in DeepMLP that the flags name, a batch and its loss."""
  kernel_init, bias_init = parse_init(args.init), parse_init(args.bias_init)
  activations.get(args.activation)
  k_data, k_init = jax.random.split(jax.random.key(args.seed))
  x, y, classes = _batch(args.data, args.batch, k_data)
  model = DeepMLP(depth=args.depth, width=args.width, out_features=classes,
                  activation=args.activation, kernel_init=kernel_init, bias_init=bias_init,
                  norm=None if args.norm == "none" else args.norm, residual=args.residual)
  variables = jax.jit(model.init)(k_init, x)
  batch_norm = {"train": True, "mutable": ["batch_stats"]} if args.norm == "batch" else {}
  call = {"model": model, "variables": variables, "x": x,
          "loss_fn": lambda logits: optax.softmax_cross_entropy_with_integer_labels(
              logits, y).mean(), **batch_norm}
  description = {"model": "mlp", "depth": args.depth, "width": args.width,
                 "activation": args.activation, "init": args.init, "bias_init": args.bias_init,
                 "norm": args.norm, "residual": args.residual, "data": args.data,
                 "batch": args.batch, "seed": args.seed,
                 "chi1": chi1_of(args.activation, kernel_init)}
  return call, description


def run(args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
  """Builds what ``args`` names and returns (the report, a description of the model)."""
  call, description = (from_config(args) if args.model in MODELS else from_factory(args.model))
  hint = args.activation if args.model in MODELS and args.activation in (
      "relu", "tanh", "sigmoid", "linear") else None
  return diagnose(**call, activation=hint), description


def main(argv: list[str] | None = None) -> Report:
  """``python -m jaxgrad.doctor``: diagnoses the model the flags name, prints (and plots) the report."""
  parser = _parser()
  args = parser.parse_args(argv)
  for flag, value, low in (("--depth", args.depth, 2), ("--width", args.width, 1),
                           ("--batch", args.batch, 2)):
    if value < low:
      parser.error(f"{flag} must be >= {low}, got {value}")
  if args.plot and not os.access(pathlib.Path(args.plot).resolve().parent, os.W_OK):
    parser.error(f"--plot: cannot write to {args.plot!r}")
  try:
    report, description = run(args)
  except ValueError as e:  # unknown names, a factory that returned the wrong thing
    parser.error(str(e))
  if args.plot:
    report.plot(args.plot, title=f"{description['model']}: {report.verdict}")
  if args.json:
    print(files.to_json({"model": description, **report.to_dict()}, indent=1))
  else:
    chi = "" if description.get("chi1") is None else f", mean-field chi_1 = {description['chi1']:.4g}"
    print(" ".join(f"{k} {v}" for k, v in description.items() if k not in ("chi1", "seed"))
          + f"{chi}\n")
    print(report)
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
