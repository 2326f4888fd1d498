"""jaxgrad.studies.classifiers: the seed nets' layers, steps to target, the monitored chunks."""

import jax
import numpy as np

from jaxgrad import data
from jaxgrad.studies import classifiers as study


def test_seed_nets_have_the_seeds_layers():
  x = np.zeros((2, 64), np.float32)
  mlp = study.seed_net("mlp", 10, init="he_normal", activation="relu", mlp_widths=(8, 6),
                       bn_width=5)
  bn = study.seed_net("bn", 10, init="he_normal", activation="relu", mlp_widths=(8, 6),
                      bn_width=5)
  mlp_vars, bn_vars = mlp.init(jax.random.key(0), x), bn.init(jax.random.key(0), x)
  assert [mlp_vars["params"][f"layer_{i}"]["dense"]["kernel"].shape for i in range(3)] == [
      (64, 8), (8, 6), (6, 10)]
  assert "batch_stats" in bn_vars and "batch_stats" not in mlp_vars
  assert bn_vars["params"]["layer_1"]["dense"]["kernel"].shape == (5, 10)


def test_steps_to_target():
  loss = np.array([[3.0] * 10 + [0.1] * 20, [3.0] * 30])
  # Window 10 ending at step 16 holds 3 x 3.0 + 7 x 0.1: mean 0.97 <= 1, the first such window.
  np.testing.assert_array_equal(study.steps_to_target(loss, 1.0), [16.0, np.nan])


def test_monitored_training_runs_every_chunk_and_hands_each_its_gradient():
  ds = data.load("digits")
  model = study.seed_net("mlp", ds.num_classes, init="he_normal", activation="relu",
                         mlp_widths=(4,), bn_width=4)
  seen = []
  whole = study.monitored_training(model, ds, study.optimizer("adam"), key=jax.random.key(0),
                                   steps=8, batch=4, on_chunk=lambda s, p, g: seen.append((s, g)))
  assert [s for s, _ in seen] == [0, 2, 4, 6]
  assert all(set(g) == {"layer_0", "layer_1"} for _, g in seen)
  assert np.shape(whole.loss) == (8,) and whole.diverged_at == -1
  assert np.shape(whole.metrics["accuracy"]) == (8,)
