"""The harness's contract, checked on each experiment's own smoke run.

Every experiment's test file binds :func:`harness_test` to its module, so the
check runs beside that file's numeric tests on the same (session-cached) smoke
run; ``tests/test_experiments.py`` walks the registry and holds every listed
experiment to having it.
"""

from collections.abc import Callable
import inspect
import types

from jaxgrad import files
from tests._json import strict_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def harness_test(module: types.ModuleType) -> Callable:
  """The contract test of one experiment module.

  Strict JSON, the config it ran, figures that are PNG files, a summary table,
  and a ``run`` that takes a checkpoint exactly when the experiment resumes by
  settings.
  """
  def test_smoke_run_keeps_the_harness_contract(smoke_run, smoke_returned):
    experiment = module.EXPERIMENT
    assert experiment.config is module.Config and experiment.name == module.__name__
    out, _ = smoke_run(module)
    assert strict_json((out / "config.json").read_text()) == strict_json(
        files.to_json(module.Config.smoke()))
    assert isinstance(strict_json((out / "results.json").read_text()), dict)
    figures = sorted(out.rglob("*.png"))
    assert figures, f"{module.__name__} drew no figure"
    for figure in figures:
      assert figure.read_bytes()[:8] == PNG_MAGIC, figure
    table = experiment.summary(smoke_returned(module))
    assert isinstance(table, str) and len(table.splitlines()) >= 3
    takes_checkpoint = "checkpoint" in inspect.signature(experiment.run).parameters
    assert takes_checkpoint == (experiment.settings is not None)

  test_smoke_run_keeps_the_harness_contract.experiment = module.__name__
  return test_smoke_run_keeps_the_harness_contract
