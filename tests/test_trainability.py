"""trainability experiment: smoke run, the 6 xi_c overlay against theory, the separation score."""


import numpy as np
import pytest

from jaxgrad import files
from experiments import trainability as tr


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  out = tmp_path_factory.mktemp("trainability")
  tr.run(tr.Config.smoke(), out)
  return out, files.read_json(out / "results.json")


def test_smoke_writes_results_and_figure(smoke):
  out, results = smoke
  config = tr.Config.smoke()
  shape = (len(config.depths), len(config.sigma_w2), config.seeds)
  assert np.shape(results["train_accuracy_per_seed"]) == shape
  acc = np.asarray(results["train_accuracy_per_seed"])
  assert np.all((acc >= 0) & (acc <= 1))
  assert np.shape(results["final_loss_per_seed"]) == shape
  assert (out / "phase_diagram.png").stat().st_size > 10_000


def test_overlay_is_six_xi_c_from_the_notes_table(smoke):
  """theory.md §1.1 (tanh, sigma_b^2 = 0.05): 6 xi_c = 21.8 at sigma_w^2 = 1, 41.9 at 4."""
  theory_ = smoke[1]["theory"]
  np.testing.assert_allclose(np.asarray(theory_["six_xi_c_on_grid"])[[0, -1]], [21.8, 41.9],
                             atol=0.05)
  assert theory_["critical_sigma_w2"] == pytest.approx(1.761, abs=5e-4)
  # The curve peaks at the grid point nearest the critical point (xi_c diverges there).
  fine = np.asarray(theory_["sigma_w2"])
  nearest = fine[np.argmin(np.abs(fine - theory_["critical_sigma_w2"]))]
  assert fine[np.argmax(theory_["six_xi_c"])] == nearest


def test_separation_counts_agreement():
  depths, grid = (10, 100), (1.0, 1.75, 4.0)
  # 6 xi_c: 21.8, ~1000s, 41.9 -> predicted trainable: depth 10 everywhere, depth 100 at 1.75 only.
  accuracy = np.array([[0.9, 0.9, 0.9], [0.1, 0.9, 0.9]])
  sep = tr.separation(accuracy, depths, grid, "tanh", 0.05)
  assert sep["threshold"] == pytest.approx(0.5)
  assert sep["false_untrainable"] == 1 and sep["false_trainable"] == 0
  assert sep["agreement"] == pytest.approx(5 / 6)


@pytest.mark.parametrize("argv, message", [
    (["--depths", "10,5"], "argument --depths: '10,5' is not allowed: must be strictly increasing"),
    (["--optimizer", "lbfgs"], "argument --optimizer: 'lbfgs' is not allowed: must be one of"),
    (["--sigma-w2", "-1"], "argument --sigma-w2: '-1.0' is not allowed: must be > 0"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    tr.main(argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err
