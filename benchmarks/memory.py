"""Memory for depth: one training step of a 10,000-layer MLP, with and without remat.

    python -m benchmarks.memory [--depth 10000] [--width 128] [--batch 64]

XLA's own accounting of the compiled step (``Compiled.memory_analysis()``:
arguments, outputs and temporaries) gives the peak device memory without
running out of it; then the step runs for real with ``remat`` and is timed.
The baseline is the same step without ``remat``; the step's trace + compile
time is compared with a 10-layer step's (it must not grow with depth).
"""

import argparse
import time

from benchmarks import _timing

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from jaxgrad import optimizers  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402


def _step(depth: int, width: int, batch: int, remat: bool):
  model = DeepMLP(depth=depth, width=width, out_features=10, activation="tanh",
                  kernel_init="xavier_normal", remat=remat)
  x = jax.random.normal(jax.random.key(0), (batch, width))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  params = jax.jit(model.init)(jax.random.key(2), x)["params"]
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("adam", 1e-3, clip_norm=1.0))
  opt_state = tx.init(params)

  def step(params, opt_state):
    def loss(p):
      logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  return step, params, opt_state


def _compile(step, params, opt_state):
  """``(compiled step, seconds to trace, lower and compile it)``, buffers donated."""
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state).compile()
  return compiled, time.perf_counter() - start


def _peak_bytes(compiled) -> int:
  m = compiled.memory_analysis()
  return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


def run(depth: int = 10_000, width: int = 128, batch: int = 64) -> dict:
  out = {"machine": _timing.machine(), "depth": depth, "width": width, "batch": batch}
  for remat in (False, True):
    step, params, opt_state = _step(depth, width, batch, remat)
    compiled, compile_seconds = _compile(step, params, opt_state)
    m = compiled.memory_analysis()
    key = "remat" if remat else "no_remat"
    out[key] = {"peak_bytes": _peak_bytes(compiled), "temp_bytes": m.temp_size_in_bytes,
                "argument_bytes": m.argument_size_in_bytes, "compile_seconds": compile_seconds}
    if remat:
      state = [params, opt_state]

      def one_step():
        state[0], state[1], loss = compiled(state[0], state[1])
        loss.block_until_ready()
        return loss

      out[key]["step_seconds"] = _timing.median_seconds(one_step, repeats=3)
      out[key]["loss_finite"] = bool(jnp.isfinite(one_step()))
  # After the deep compiles, so that neither pays the process's first-compile costs.
  _, shallow = _compile(*_step(10, width, batch, remat=True))
  out["rows"] = [{
      "benchmark": "memory",
      "figure": f"train step, MLP L={depth} N={width} B={batch}: peak memory with remat",
      "measured": f"{out['remat']['peak_bytes'] / 2**20:.0f} MiB "
                  f"({out['remat']['step_seconds']:.2f} s/step)",
      "baseline": f"{out['no_remat']['peak_bytes'] / 2**20:.0f} MiB without remat",
      "ratio": out["remat"]["peak_bytes"] / out["no_remat"]["peak_bytes"],
  }, {
      "benchmark": "memory",
      "figure": f"train step, MLP L={depth} N={width} B={batch}: trace + compile (remat)",
      "measured": f"{out['remat']['compile_seconds']:.2f} s",
      "baseline": f"{shallow:.2f} s at L=10",
      "ratio": out["remat"]["compile_seconds"] / shallow,
  }]
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--depth", type=int, default=10_000)
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--batch", type=int, default=64)
  args = parser.parse_args(argv)
  r = run(args.depth, args.width, args.batch)
  print(_timing.format_rows(r["rows"], r["machine"]))
  return r


if __name__ == "__main__":
  main()
