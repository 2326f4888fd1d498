"""benchmarks.long_runs: flop counts against hand counts, the extrapolation, the compile/run split.

The benchmark's ``main`` is not run here: even at the experiments' smoke
configs it compiles four training programs (about 20 s each on the shared
2-core machine), far past a unit test's budget.
"""

import dataclasses
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import _configs, _timing, long_runs, rnn
from experiments import adding_problem as ap
from experiments import rnn_clipping as rc


def test_adding_flops_smoke_by_hand():
  # One program: LSTM (g = 4), T = 6, H = 4, 2 features; 2 clipping arms x 2 seeds = 4 replicas.
  # Per example: T * 2 (2 + 4) * 4 * 4 + 2 * 4 (head) = 6 * 192 + 8 = 1160 flops forward.
  # Training 3 x 4 steps x batch 4 = 48 passes, test 50 sequences: (48 + 50) * 1160 * 4 replicas.
  assert long_runs.adding_flops(ap.Config.smoke()) == 454_720 == (48 + 50) * 1160 * 4


def test_adding_flops_arms_and_lengths_by_hand():
  config = ap.Config(lengths=(4, 8), cells=("simple", "lstm"), forget_biases=(0.0, 1.0),
                     clipping=("none",), seeds=1, hidden=2, steps=1, batch_size=1, test_size=1,
                     log_every=1)
  # Arms: simple, lstm b_f=0, lstm b_f=1. Per example and step: simple 2 (2 + 2) 2 = 16,
  # LSTM 2 (2 + 2) 8 = 64; the sum over arms and T: (16 + 64 + 64) (4 + 8) = 1728; the head,
  # 2 H = 4 per pass, in 3 arms x 2 lengths = 6 programs: 24. Each program runs 3 training
  # passes of 1 sequence and 1 test pass of 1 sequence: 4 passes.
  assert long_runs.adding_flops(config) == 4 * (1728 + 24) == 7008


def test_clipping_flops_by_hand():
  # The smoke sizes with arms none, clip_norm (simple), gru; 2 seeds; 20 sequences in batches
  # of 8: 3 steps per epoch (the last padded), 2 epochs = 6 steps. Per example: simple
  # 6 * 2 (1 + 4) 4 + 8 = 248, GRU 6 * 2 (1 + 4) 12 + 8 = 728. 3 x 6 steps x batch 8 x 2 seeds
  # = 288 passes.
  three_arms = dataclasses.replace(rc.Config.smoke(), arms=("none", "clip_norm", "gru"))
  assert long_runs.clipping_flops(three_arms) == 352_512 == 288 * (248 + 248 + 728)
  two_layers = rc.Config(arms=("lstm",), seeds=1, num_sequences=4, length=3, hidden=2, layers=2,
                         batch_size=4, epochs=1)
  # Layer 0 reads 1 feature: 2 (1 + 2) 8 = 48; layer 1 reads H: 2 (2 + 2) 8 = 64; head 4.
  assert long_runs.clipping_flops(two_layers) == 3 * 1 * 4 * (3 * (48 + 64) + 4) == 4080


def test_clipping_flops_match_the_seed_benchmark():
  # benchmarks.rnn counts the 1000 real sequences per epoch; the program computes 16 full
  # batches of 64, the last padded with 24 weight-0 sequences: 1024.
  config = rc.Config(arms=("clip_norm",), seeds=1)
  assert long_runs.clipping_flops(config) == pytest.approx(rnn.run_flops(config) * 1024 / 1000,
                                                           rel=1e-12)


@pytest.mark.parametrize("cell", ["simple", "gru", "lstm"])
def test_per_gate_shapes_have_the_fused_flops(cell):
  kw = dict(replicas=3, batch=5, features=2, hidden=7, layers=2, length=4, passes=3)
  fused = long_runs.network_matmuls(cell, **kw)
  issued = long_runs.network_matmuls(cell, per_gate=True, **kw)
  assert sum(m.flops for m in fused) == sum(m.flops for m in issued)
  assert {m.n for m in issued} == {7, 1}


def test_timed_programs_extrapolate_to_the_default_counts():
  config = ap.Config()
  programs = long_runs.adding_programs(config, 0.05)
  assert [p.label.split(",")[0] for p in programs] == ["simple", "lstm", "gru"]
  lstm = programs[1]
  assert (lstm.fraction, lstm.scale, lstm.programs) == (0.05, 3 * 350 / 100, 9)
  extrapolated = sum(m.flops * p.scale / p.fraction for p in programs for m in p.matmuls)
  # Exact but for the head, which does not grow with T: 1e-5 of the total.
  assert extrapolated == pytest.approx(long_runs.adding_flops(config), rel=1e-4)
  config = rc.Config()
  programs = long_runs.clipping_programs(config, 0.05)
  assert [(p.fraction, p.scale) for p in programs] == [(0.05, 3), (0.05, 1), (0.05, 1)]
  extrapolated = sum(m.flops * p.scale / p.fraction for p in programs for m in p.matmuls)
  assert extrapolated == pytest.approx(long_runs.clipping_flops(config), rel=1e-12)


def test_default_flop_counts():
  assert long_runs.adding_flops(ap.Config()) == 109_382_384_640_000
  assert long_runs.clipping_flops(rc.Config()) == 20_195_888_332_800


def test_benchmarks_read_the_default_config_from_the_command_line():
  # What the benchmark times is the experiment's own config, read through its --print-config
  # (no import of the experiment): the same fields and the same flop count as its Config.
  config = _configs.experiment_config("rnn_clipping", "--arms", "clip_norm", "--seeds", "1")
  assert vars(config) == dataclasses.asdict(rc.Config(arms=("clip_norm",), seeds=1))
  assert long_runs.clipping_flops(config) == pytest.approx(rnn.run_flops(config) * 1024 / 1000,
                                                           rel=1e-12)
  assert vars(_configs.replace(config, seeds=3)) == {**vars(config), "seeds": 3}
  # A refusal (here: no such experiment; a bad value is refused the same way, test_cli) is
  # a ValueError carrying the command's own message.
  with pytest.raises(ValueError, match="No module named experiments.no_such_experiment"):
    _configs.experiment_config("no_such_experiment")


def test_timed_splits_compile_from_run():
  x = jnp.ones((8, 8))
  f = jax.jit(lambda x: jnp.tanh(x @ x).sum())
  compile_s, run_s = long_runs.timed(lambda: f(x).block_until_ready())
  assert compile_s > 0 and run_s >= 0
  assert long_runs.timed(lambda: f(x).block_until_ready())[0] == 0


def test_matmul_rates_are_positive():
  assert _timing.matmul_flops_per_second(5, batch=4, k=3, replicas=2, chain=2) > 0  # rectangular
  assert _timing.matmul_flops_per_second(4, batch=2) > 0  # square, the default
  assert long_runs.Matmul(2, 4, 3, 5, count=1).rate > 0


def test_tables_print():
  program = {"experiment": "adding_problem", "program": "lstm", "compile_seconds": 1.0,
             "run_seconds": 4.0, "floor_seconds": 1.0, "issued_floor_seconds": 2.0,
             "latency_seconds": 1.5}
  assert "4.00x" in long_runs.program_table([program])
  full = {"experiment": "adding_problem", "flops": 2e12, "fraction": 0.05, "run_seconds": 700.0,
          "compile_seconds": 60.0, "floor_seconds": 350.0, "issued_floor_seconds": 400.0,
          "latency_seconds": 100.0}
  rows = long_runs.rows({"runs": [full]})
  assert [r["ratio"] for r in rows] == [2.0, 1.4]
  assert rows[0]["measured"] == "11.7 min (+ 60.00 s compile)"
  assert "from 5% of its steps" in rows[0]["figure"]


TINY_SEED_RUN = types.SimpleNamespace(num_sequences=8, length=5, hidden=3, layers=2, batch_size=4,
                                      epochs=2, learning_rate=0.01, clip_norm=1.0)


def test_the_pytorch_baseline_is_skipped_without_torch(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` raises ImportError
  assert rnn.torch_seconds(TINY_SEED_RUN, repeats=1) is None


def test_the_seeds_pytorch_code_trains():
  torch = pytest.importorskip("torch")
  np.random.seed(0)
  torch.manual_seed(0)
  x, y = rnn.generate_sequence_data(8, 5)
  assert tuple(x.shape) == (8, 5, 1) and tuple(y.shape) == (8, 1)
  assert float(x.abs().max()) <= 1.0 and float(y.abs().max()) <= 1.0
  model = rnn.vanilla_rnn_class()(1, 3, 2, 1)
  # nn.RNN: 2 layers of W_ih, W_hh, b_ih, b_hh (3 + 9 + 6 and 9 + 9 + 6); the head 3 + 1.
  assert sum(p.numel() for p in model.parameters()) == 18 + 24 + 4
  loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
  losses = rnn.train_rnn(model, loader, torch.nn.MSELoss(), torch.optim.Adam(model.parameters()),
                         epochs=3, clip_value=1.0)
  assert len(losses) == 3 and np.isfinite(losses).all()
  assert rnn.torch_seconds(TINY_SEED_RUN, repeats=1) > 0
