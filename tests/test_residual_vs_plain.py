"""experiments.residual_vs_plain: smoke run, structure, numbers against theory, CLI errors."""


import numpy as np
import pytest

from experiments import residual_vs_plain as rvp
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(rvp)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(rvp)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = rvp.Config.smoke()
  b, seeds = config.blocks, config.seeds
  assert set(results["cases"]) == {f"relu/{n}/{a}" for n in config.norms for a in rvp.ARCHS}
  for name, case in results["cases"].items():
    entries = b + 2 if case["arch"] == "residual" else 2 * b + 2
    assert np.shape(case["signal"]["per_seed"]) == (seeds, entries), name
    assert len(case["signal_at"]) == entries
    for key in ("max", "min", "condition", "mean_sq", "q"):
      assert np.shape(case[key]["per_seed"]) == (seeds, b), (name, key)
    assert case["nonfinite_fraction"] == 0.0
  for name in ("signal.png", "spectrum.png", "stream.png"):
    assert (out / name).stat().st_size > 10_000


def test_signal_is_relative_to_the_output(smoke):
  for case in smoke[1]["cases"].values():
    np.testing.assert_allclose(np.asarray(case["signal"]["per_seed"])[:, -1], 1.0, rtol=1e-12)


def test_theory_values(smoke):
  cases = smoke[1]["cases"]
  b = rvp.Config.smoke().blocks
  # He-init ReLU branch: the squared signal and the stream grow by exactly 3 per block.
  residual = cases["relu/none/residual"]["theory"]
  assert residual["growth_per_block"] == pytest.approx(3.0, rel=1e-3)
  np.testing.assert_allclose(residual["mean_sq"], 3.0 ** np.arange(1, b + 1), rtol=1e-3)
  # He-init plain ReLU net is critical: chi_1 = 1 at every layer.
  np.testing.assert_allclose(cases["relu/none/plain"]["theory"]["signal_sq"], 1.0, rtol=1e-3)
  assert cases["relu/layer/plain"]["theory"] is None


def test_measurement_follows_theory(smoke):
  """Residual ReLU explodes ~3x per block in the squared signal, the plain net does not.

  Width 8 and two seeds: a loose bar, but one that a wrong model or a wrong
  signal (e.g. without the identity path, growth ~1) fails.
  """
  cases = smoke[1]["cases"]
  growth = cases["relu/none/residual"]["growth_per_block"]["median"]
  assert growth == pytest.approx(3.0, rel=0.5)
  stack_rms = np.sqrt(np.asarray(cases["relu/none/residual"]["mean_sq"]["median"]))
  np.testing.assert_allclose(stack_rms, np.sqrt(3.0) ** np.arange(1, 4), rtol=0.5)
  assert growth > 2 * cases["relu/none/plain"]["growth_per_block"]["median"]


@pytest.mark.parametrize("argv, message", [
    (["--norms", "batch"], "argument --norms: 'batch' is not allowed: must be one of"),
    (["--activations", "gelu"], "argument --activations: 'gelu' is not allowed: must be one of"),
    (["--blocks", "0"], "argument --blocks: 0 is not allowed: must be >= 1"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    rvp.main(argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err
