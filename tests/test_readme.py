"""The README's "Diagnose your own model" block runs as pasted and says what the README says."""

import json
import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str) -> str:
  text = README.read_text()
  section = text[text.index(heading):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_diagnose_your_own_model_runs_as_pasted(tmp_path):
  code = _block("## Diagnose your own model")
  assert len(code.strip().splitlines()) <= 15
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300, check=True).stdout
  assert "verdict: vanishing (healthy: 2, vanishing: 7)" in out
  assert (tmp_path / "gradient_flow.png").stat().st_size > 10_000
  # The README's figure: chi_1 = 64 * 0.01^2 * (1/4)^2 = 4e-4 per layer, beside the growth.
  chi1 = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("Dense_")][:7]
  assert all(3e-4 < c < 5e-4 for c in chi1)


def test_the_studies_block_runs_as_pasted_and_measures_chi1(tmp_path):
  """The block measures tanh's chi_1 at three sigma_w^2 against theory (notes: 1.342 at 4.0)."""
  code = _block("## The experiments' science in your own scripts")
  report = "\nimport json; print(json.dumps(chi1['chi1_rel_error'].tolist()))"
  out = subprocess.run([sys.executable, "-c", code + report], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, check=True).stdout
  assert max(json.loads(out.splitlines()[-1])) < 0.05
