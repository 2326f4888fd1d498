"""benchmarks.seed_sweeps: the networks and weights it counts from the runs' configs, its ratios.

The benchmark's ``main`` is not run here (it times whole experiment runs and the tutorial's
PyTorch loop); these check the arithmetic its two figures rest on.
"""

import pytest

from benchmarks import seed_sweeps
from jaxgrad import files


def _write_configs(root, *, seeds):
  files.write_json(root / "init_comparison" / "config.json",
                   {"depth": 20, "width": 100, "in_features": 10, "batch": 32, "seeds": seeds,
                    "activations": ["relu", "tanh"], "inits": ["a"] * 7})
  files.write_json(root / "depth_comparison" / "config.json",
                   {"depths": [5, 10, 20, 50, 100], "width": 100, "in_features": 10,
                    "activations": ["relu", "tanh", "sigmoid"], "seeds": seeds})


def test_the_default_runs_draw_580_networks_and_156m_weights(tmp_path):
  _write_configs(tmp_path, seeds=20)
  networks = seed_sweeps.networks_drawn(tmp_path)
  assert len(networks) == 7 * 2 * 20 + 5 * 3 * 20 == 580
  # init_comparison: 10x100 + 18 x 100x100 + 100x1 per network, 280 networks;
  # depth_comparison: 10x100 + (d - 2) x 100x100 + 100x1 per network, 60 per depth.
  init = 280 * (1000 + 18 * 10_000 + 100)
  depth = 60 * sum(1000 + (d - 2) * 10_000 + 100 for d in (5, 10, 20, 50, 100))
  assert seed_sweeps.weights_drawn(networks) == init + depth == 156_038_000


def test_the_tutorials_loop_draws_one_network_per_curve(tmp_path):
  _write_configs(tmp_path, seeds=1)
  assert len(seed_sweeps.networks_drawn(tmp_path)) == seed_sweeps.SEED_NETWORKS == 29


def test_ratios_are_against_the_baselines_of_the_same_run():
  r = {"seeds": 20, "networks": 580, "jaxgrad_warm": 10.0, "floor": {"total": 4.0},
       "baseline": 2.9}
  floor_row, network_row = seed_sweeps.ratio_rows(r)
  assert floor_row["ratio"] == 2.5
  # The tutorial's loop: 2.9 s / 29 networks = 100 ms; jaxgrad: 10 s / 580 = 17.24 ms.
  assert network_row["ratio"] == pytest.approx(100.0 / (1e4 / 580))
  assert "100.0 ms per network (29)" in network_row["baseline"]
  assert seed_sweeps.ratio_rows({**r, "baseline": None})[1]["ratio"] is None
