"""What the probe costs: diagnose's probed loss and gradient against the plain ``value_and_grad``.

``python -m benchmarks.diagnose`` times, on a 12-block ViT-Ti (hidden 192, MLP 768,
3 heads, 32 x 32 images in 4 x 4 patches, batch 32) and the Flax examples' MNIST
CNN (28 x 28, batch 128), both written as their public sources write them:

* baseline: ``jax.jit(jax.value_and_grad(loss))`` of the unedited model;
* probed: ``jax.jit`` of :meth:`jaxgrad.probe.Probe.value_and_grad`, everything
  :func:`jaxgrad.diagnose` needs (weight gradients, the signal at every
  parameter-owning module's output, the input statistics) in one backward pass;
* signal only: the same with ``stats=False`` (weight gradients and signals);

and prints the median step time (7 runs) and the median compile time (3 compiles)
of each, and their ratios (goal: at most 1.5x the step, 2x the compile).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import functools  # noqa: E402
import statistics  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import _timing  # noqa: E402
from benchmarks._timing import compile_seconds, median_seconds  # noqa: E402
from jaxgrad import probe  # noqa: E402
from tests import foreign_models as fm  # noqa: E402


def _loss(out):
  return jnp.mean(jax.nn.logsumexp(out, -1) - out[:, 0])


def vit_ti(key):
  model = fm.VisionTransformer(
      num_classes=10, patches=fm.Patches(size=(4, 4)), hidden_size=192, zero_head=False,
      transformer=dict(num_layers=12, mlp_dim=768, num_heads=3, dropout_rate=0.0,
                       attention_dropout_rate=0.0))
  x = jax.random.normal(key, (32, 32, 32, 3))
  return model, jax.jit(functools.partial(model.init, train=False))(key, x), x, {"train": False}


def mnist_cnn(key):
  model = fm.CNN()
  x = jax.random.normal(key, (128, 28, 28, 1))
  return model, jax.jit(model.init)(key, x), x, {}


def compare(name, factory) -> dict:
  model, variables, x, kwargs = factory(jax.random.key(0))

  # The batch is an argument, not a closed-over constant: XLA would constant-fold the
  # probe's input statistics of a constant batch at compile time (seconds on the CNN).
  def plain(v, x):
    return jax.value_and_grad(lambda p: _loss(model.apply({**v, "params": p}, x, **kwargs)))(
        v["params"])

  pr = probe.trace(model, variables, x, **kwargs)
  probed = lambda v, x: pr.value_and_grad(v, x, _loss)  # noqa: E731
  signal_only = lambda v, x: pr.value_and_grad(v, x, _loss, stats=False)  # noqa: E731
  row = {"model": name, "probed modules": len(pr.trace.rows)}
  for label, fn in (("plain", plain), ("probed", probed), ("signal only", signal_only)):
    # A fresh function each time, or JAX answers from its in-memory caches.
    row[f"{label} compile s"] = statistics.median(
        compile_seconds(lambda v, x, fn=fn: fn(v, x), variables, x) for _ in range(3))
    jitted = jax.jit(fn)
    row[f"{label} step ms"] = 1e3 * median_seconds(
        lambda jitted=jitted: jax.block_until_ready(jitted(variables, x)), repeats=7, warmup=2)
  for label in ("probed", "signal only"):
    row[f"{label} step ratio"] = row[f"{label} step ms"] / row["plain step ms"]
    row[f"{label} compile ratio"] = row[f"{label} compile s"] / row["plain compile s"]
  return row


def rows(results: list[dict]) -> list[dict]:
  """The suite's table rows: probed step and compile, with and without statistics."""
  out = []
  for r in results:
    for label, what in (("probed", "diagnose's probed loss + gradient"),
                        ("signal only", "the probe without input statistics")):
      out.append({"benchmark": "diagnose", "figure": f"{what}, {r['model']}: step",
                  "measured": f"{r[f'{label} step ms']:.1f} ms",
                  "baseline": f"plain value_and_grad {r['plain step ms']:.1f} ms",
                  "ratio": r[f"{label} step ratio"]})
      out.append({"benchmark": "diagnose", "figure": f"{what}, {r['model']}: compile",
                  "measured": f"{r[f'{label} compile s']:.2f} s",
                  "baseline": f"plain value_and_grad {r['plain compile s']:.2f} s",
                  "ratio": r[f"{label} compile ratio"]})
  return out


def main(argv=None) -> dict:
  del argv  # no options: the README's figures
  results = [compare(name, factory) for name, factory in (
      ("ViT-Ti 12 blocks, batch 32", vit_ti), ("MNIST CNN, batch 128", mnist_cnn))]
  return _timing.report({"machine": _timing.machine(), "results": results}, rows(results))


if __name__ == "__main__":
  main()
