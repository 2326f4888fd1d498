"""Tolerances, chosen once from the dtype (see notes/style.md rule 9).

F32 / F64: elementwise comparisons of values computed two ways.
F32_REDUCED: reduced quantities (norms, spectra, statistics over many entries).
"""

F32 = dict(rtol=1e-5, atol=1e-6)
F32_REDUCED = dict(rtol=5e-3, atol=1e-6)
F64 = dict(rtol=1e-10, atol=1e-12)
# ln s of a product of a few hundred float32 layers: per-layer rounding ~1e-7, summed.
F32_LOG_SPECTRUM = dict(rtol=0, atol=1e-3)
# Central finite differences in float64 with step 1e-6: error ~ eps/h + h^2 ~ 1e-10.
F64_FINITE_DIFFERENCE = dict(rtol=1e-6, atol=1e-8)
# Trapezoid-rule Gaussian integrals across the kinks of ReLU / hard-tanh: error O(h), about
# 1e-4 on the 1-D grid and 5e-4 on the coarser 2-D grid.
QUADRATURE_KINK = dict(rtol=1e-3, atol=1e-8)
