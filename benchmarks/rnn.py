"""Tutorial 000 §7.3 (3-layer RNN, clipping) in jaxgrad against its PyTorch code and the floor.

    python -m benchmarks.rnn [--repeats 3] [--seeds 8] [--epochs 20]

One run of the tutorial's setting (1000 sine sequences of length 100, 3-layer tanh
RNN of hidden size 64, Adam lr 0.01, ``clip_grad_norm_(1.0)``, batch 64
shuffled, 20 epochs = 320 steps), timed three ways in this one process:

1. the tutorial's PyTorch code, ported verbatim (``VanillaRNN``, ``DataLoader``,
   ``train_rnn`` without its prints); skipped, with a note, when torch is
   not installed;
2. :mod:`experiments.rnn_clipping`'s program for one seed
   (:func:`jaxgrad.studies.recurrent.arm_program` at that experiment's
   default config, read from its command line (:mod:`benchmarks._configs`):
   one jitted ``lax.scan`` over steps), compile time apart from run time;
3. the same program vmapped over ``--seeds`` seeds, per seed.

The arithmetic floor is the run's matmul flops, forward ``2 H (in_l + H)`` per
example, time step and layer, times 3 for forward plus backward, over the
float32 matmul rate measured at the RNN's shapes (64 x 64 @ 64 x 64) in the
same run. Timings are printed, never asserted.
"""

import argparse
import functools
import pathlib
import time

from benchmarks import _timing

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import _configs  # noqa: E402
from benchmarks._configs import ExperimentConfig  # noqa: E402
from jaxgrad.studies import recurrent  # noqa: E402


def run_flops(config: ExperimentConfig) -> float:
  """Matmul flops of one training run: 3 x forward, every example of every epoch."""
  inputs = [1] + [config.hidden] * (config.layers - 1)
  per_step = sum(2 * config.hidden * (n_in + config.hidden) for n_in in inputs)
  head = 2 * config.hidden
  return 3.0 * config.epochs * config.num_sequences * (config.length * per_step + head)


def generate_sequence_data(num_samples: int, seq_length: int):
  """The tutorial's data: sine sequences of random frequency and phase, target the next value.

  NumPy's global generator, as in the tutorial; returns ``torch.FloatTensor`` s.
  """
  import torch

  x = np.zeros((num_samples, seq_length, 1))
  y = np.zeros((num_samples, 1))
  for i in range(num_samples):
    freq = np.random.uniform(0.5, 2.0)
    phase = np.random.uniform(0, 2 * np.pi)
    t = np.linspace(0, 4 * np.pi, seq_length)
    x[i, :, 0] = np.sin(freq * t + phase)
    y[i, 0] = np.sin(freq * (t[-1] + t[1] - t[0]) + phase)
  return torch.FloatTensor(x), torch.FloatTensor(y)


@functools.cache
def vanilla_rnn_class() -> type:
  """The tutorial's ``VanillaRNN``: ``nn.RNN`` (tanh) and a Linear head on the last step.

  Defined on the first call, since it subclasses torch's ``nn.Module``.
  """
  import torch
  from torch import nn

  class VanillaRNN(nn.Module):
    def __init__(self, input_size, hidden_size, num_layers, output_size):
      super().__init__()
      self.hidden_size, self.num_layers = hidden_size, num_layers
      self.rnn = nn.RNN(input_size, hidden_size, num_layers, batch_first=True)
      self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
      h0 = torch.zeros(self.num_layers, x.size(0), self.hidden_size)
      out, _ = self.rnn(x, h0)
      return self.fc(out[:, -1, :])

  return VanillaRNN


def train_rnn(model, loader, criterion, optimizer, epochs: int,
              clip_value: float | None) -> list[float]:
  """The tutorial's ``train_rnn`` without its prints: the mean batch loss of every epoch."""
  import torch

  losses = []
  for _ in range(epochs):
    model.train()
    epoch_loss = 0.0
    for inputs, targets in loader:
      optimizer.zero_grad()
      loss = criterion(model(inputs), targets)
      loss.backward()
      if clip_value is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_value)
      optimizer.step()
      epoch_loss += loss.item()
    losses.append(epoch_loss / len(loader))
  return losses


def torch_seconds(config: ExperimentConfig, repeats: int) -> float | None:
  """The tutorial's code, one run with clipping; ``None`` without torch."""
  try:
    import torch
    from torch import nn, optim
    from torch.utils.data import DataLoader, TensorDataset
  except ImportError:
    return None

  torch.manual_seed(0)
  np.random.seed(0)
  x, y = generate_sequence_data(config.num_sequences, config.length)
  loader = DataLoader(TensorDataset(x, y), batch_size=config.batch_size, shuffle=True)

  def one_run():
    model = vanilla_rnn_class()(1, config.hidden, config.layers, 1)
    optimizer = optim.Adam(model.parameters(), lr=config.learning_rate)
    train_rnn(model, loader, nn.MSELoss(), optimizer, config.epochs, config.clip_norm)

  return _timing.median_seconds(one_run, repeats=repeats, warmup=0)


def arm_program(config: ExperimentConfig, arm: str):
  """``(one, keys)``: :func:`recurrent.arm_program` of ``arm`` at ``config``, one key per seed."""
  one = recurrent.arm_program(arm, **recurrent.study_kwargs(recurrent.arm_program, config))
  return one, jax.random.split(jax.random.key(config.seed), config.seeds)


def jax_seconds(config: ExperimentConfig, repeats: int) -> tuple[float, float]:
  """``(compile seconds, run seconds)`` of the clip_norm arm for ``config.seeds`` seeds."""
  one, keys = arm_program(config, "clip_norm")
  start = time.perf_counter()
  compiled = jax.jit(jax.vmap(one)).lower(keys).compile()  # what sweep runs on one device
  compile_s = time.perf_counter() - start
  run_s = _timing.median_seconds(lambda: jax.block_until_ready(compiled(keys)), repeats=repeats)
  return compile_s, run_s


def run(repeats: int = 3, seeds: int = 8, epochs: int = 20) -> dict:
  config = _configs.experiment_config("rnn_clipping", "--arms", "clip_norm", "--seeds", "1",
                                      "--epochs", str(epochs))
  flops = run_flops(config)
  rate = _timing.matmul_flops_per_second(config.hidden, batch=config.batch_size)
  compile_1, seconds_1 = jax_seconds(config, repeats)
  compile_n, seconds_n = jax_seconds(_configs.replace(config, seeds=seeds),
                                     max(1, repeats - 1))
  return {
      "machine": _timing.machine(),
      "config": {k: getattr(config, k) for k in ("num_sequences", "length", "hidden", "layers",
                                                 "batch_size", "epochs", "unroll")},
      "flops_per_run": flops,
      "matmul_gflops": rate / 1e9,
      "floor_seconds": flops / rate,
      "torch_seconds": torch_seconds(config, repeats),
      "jax_compile_seconds": compile_1,
      "jax_seconds": seconds_1,
      "vmapped_seeds": seeds,
      "jax_vmapped_compile_seconds": compile_n,
      "jax_vmapped_seconds_per_seed": seconds_n / seeds,
  }


def rows(r: dict) -> list[dict]:
  floor = (f"floor {r['flops_per_run'] / 1e9:.0f} GFLOP at {r['matmul_gflops']:.1f} GFLOP/s: "
           f"{r['floor_seconds']:.2f} s")
  out = []
  torch_s = r["torch_seconds"]
  out.append({"benchmark": "rnn", "figure": "tutorial 000 §7.3 RNN run, jaxgrad vs the tutorial's PyTorch code",
              "measured": f"{r['jax_seconds']:.2f} s",
              "baseline": ("torch not installed" if torch_s is None
                           else f"PyTorch {torch_s:.2f} s"),
              "ratio": None if torch_s is None else torch_s / r["jax_seconds"]})
  out.append({"benchmark": "rnn", "figure": "tutorial 000 §7.3 RNN run, jaxgrad vs the arithmetic floor",
              "measured": f"{r['jax_seconds']:.2f} s", "baseline": floor,
              "ratio": r["jax_seconds"] / r["floor_seconds"]})
  out.append({"benchmark": "rnn",
              "figure": f"tutorial 000 §7.3 RNN, {r['vmapped_seeds']} seeds vmapped, per seed",
              "measured": f"{r['jax_vmapped_seconds_per_seed']:.2f} s", "baseline": floor,
              "ratio": r["jax_vmapped_seconds_per_seed"] / r["floor_seconds"]})
  out.append({"benchmark": "rnn", "figure": "tutorial 000 §7.3 RNN, compile time (1 seed / vmapped)",
              "measured": f"{r['jax_compile_seconds']:.2f} s",
              "baseline": f"{r['jax_vmapped_compile_seconds']:.2f} s vmapped", "ratio": None})
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.rnn", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seeds", type=int, default=8, help="seeds in the vmapped row")
  parser.add_argument("--epochs", type=int, default=20, help="the tutorial's 20; fewer to try it")
  parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
  args = parser.parse_args(argv)
  r = run(args.repeats, args.seeds, args.epochs)
  return _timing.report(r, rows(r), args.json)


if __name__ == "__main__":
  main()
