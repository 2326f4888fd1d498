"""The headline experiment: smoke run, the published theory lines, CLI errors (science: test_studies_jacobian_spectra)."""

import json

import numpy as np
import pytest

from experiments import jacobian_spectrum as js
from jaxgrad import theory
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(js)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(js)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = js.Config.smoke()
  assert set(results["cases"]) == {f"{a}/{w}" for a in config.activations for w in config.weights}
  for case in results["cases"].values():
    for key in ("mean_sq", "var_sq", "max", "min", "condition"):
      assert np.shape(case[key]["per_seed"]) == (config.seeds, len(config.depths))
    assert len(case["theory"]["var_sq"]) == len(config.depths)
  for name in ("density.png", "moments.png", "finite_width.png"):
    assert (out / name).stat().st_size > 10_000


def test_linear_orthogonal_is_an_isometry_at_every_depth(smoke):
  case = smoke[1]["cases"]["linear/orthogonal"]
  np.testing.assert_allclose(case["max"]["per_seed"], 1.0, rtol=1e-5)
  np.testing.assert_allclose(case["min"]["per_seed"], 1.0, rtol=1e-5)
  np.testing.assert_allclose(case["theory"]["var_sq"], 0.0, atol=1e-12)


def test_theory_lines_are_the_published_ones(smoke):
  depths = np.asarray(js.Config.smoke().depths)
  cases = smoke[1]["cases"]
  np.testing.assert_allclose(cases["linear/gaussian"]["theory"]["var_sq"], depths, rtol=1e-6)
  np.testing.assert_allclose(cases["relu/gaussian"]["theory"]["var_sq"], 2 * depths, rtol=1e-4)
  np.testing.assert_allclose(cases["relu/orthogonal"]["theory"]["var_sq"], depths, rtol=1e-4)


def test_sigmoid_uses_its_theoretical_critical_point(smoke):
  sigma_w2 = smoke[1]["sigma_w2"]["sigmoid"]
  assert float(theory.chi1("sigmoid", sigma_w2, 0.0)) == pytest.approx(1.0, abs=1e-3)


def test_cli_runs_and_prints_the_table(tmp_path, capsys):
  # --no-compile-cache: an in-process run would otherwise switch on the persistent cache for
  # every later compile in this test worker (writes that no later test reads).
  js.main(["--width", "8", "--depths", "1,3", "--seeds", "2", "--activations", "relu",
           "--weights", "orthogonal", "--no-compile-cache", "--out", str(tmp_path)])
  printed = capsys.readouterr().out
  assert "relu/orthogonal" in printed and "predicted" in printed
  assert json.loads((tmp_path / "config.json").read_text())["depths"] == [1, 3]


@pytest.mark.parametrize("argv, message", [
    (["--width", "abc"], "invalid int value: 'abc'"),
    (["--depths", "4,2"], "argument --depths: '4,2' is not allowed: must be strictly increasing"),
    (["--activations", "softmax"], "argument --activations: 'softmax' is not allowed: must be one of"),
    (["--weights", "uniform"], "argument --weights: 'uniform' is not allowed: must be one of"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    js.main(argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err
