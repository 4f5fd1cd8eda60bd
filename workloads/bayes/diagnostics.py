"""The posterior's diagnostics (NumPyro's ESS and split R-hat) and the check of a run against the
truth its data were drawn from and against the reference variant's run."""

from __future__ import annotations

import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from scipy import stats

from jaxbench.workloads.bayes.model import LATENT_SITES
from jaxbench.workloads.contract import IncorrectResult

CHECKED_SITES = ("mu", "tau", "beta")
"""The parameters whose posteriors are checked against the truth the data were drawn from."""
MAX_SPLIT_RHAT = 1.05
FAMILY_CONFIDENCE = 0.95
"""Every checked value must lie in its credible interval, the intervals together holding the truth
with this probability (Bonferroni: each interval at 1 - 0.05 / number of values)."""
PREDICTIVE_RTOL = 1e-5


def posterior_summary(draws: dict) -> dict[str, dict[str, np.ndarray]]:
    """site -> mean, sd, effective sample size and split R-hat of each value (draws [C, S, ...])."""
    summary = {}
    for site in (*LATENT_SITES, "beta"):
        values = np.asarray(draws[site], np.float64)
        summary[site] = {
            "mean": values.mean(axis=(0, 1)),
            "sd": values.std(axis=(0, 1), ddof=1),
            "ess": np.asarray(effective_sample_size(values)),
            "rhat": np.asarray(split_gelman_rubin(values)),
        }
    return summary


def check(result: dict, reference: dict) -> dict[str, float]:
    """Raise `IncorrectResult` unless the posterior converged, holds the truth, agrees with the
    reference's within Monte Carlo error, and the predictive matches the reference's exactly.

    - split R-hat of every latent value below `MAX_SPLIT_RHAT`;
    - every checked value's truth inside its credible interval (normal approximation, Bonferroni
      over all values at `FAMILY_CONFIDENCE`): |mean - truth| / sd <= z;
    - every value's posterior mean within the same z of the reference's, in units of the two
      Monte Carlo standard errors (sd / sqrt(ESS)) combined;
    - the predictive at the true parameters within `PREDICTIVE_RTOL` of the reference's.

    Returns the worst figure of each check.
    """
    summary, ref = result["summary"], reference["summary"]
    values = sum(summary[site]["mean"].size for site in CHECKED_SITES)
    z_limit = float(stats.norm.ppf(1 - (1 - FAMILY_CONFIDENCE) / (2 * values)))
    rhat = max(float(s["rhat"].max()) for s in summary.values())
    truth_z = max(float(np.max(np.abs(summary[s]["mean"] - result["truth"][s]) / summary[s]["sd"]))
                  for s in CHECKED_SITES)

    def mcse(s):
        return s["sd"] / np.sqrt(s["ess"])

    agreement_z = max(float(np.max(np.abs(summary[s]["mean"] - ref[s]["mean"])
                                   / np.sqrt(mcse(summary[s]) ** 2 + mcse(ref[s]) ** 2)))
                      for s in CHECKED_SITES)
    probe, probe_ref = result["predictive_at_truth"], reference["predictive_at_truth"]
    predictive_error = float(np.linalg.norm(probe - probe_ref) / np.linalg.norm(probe_ref))
    figures = {"max_split_rhat": rhat, "truth_z": truth_z, "agreement_z": agreement_z, "z_limit": z_limit,
               "predictive_rel_error": predictive_error}
    failures = []
    if not rhat < MAX_SPLIT_RHAT:
        failures.append(f"split R-hat {rhat:.3f} >= {MAX_SPLIT_RHAT}")
    if not truth_z <= z_limit:
        failures.append(f"a true parameter lies {truth_z:.2f} sd from its posterior mean (limit {z_limit:.2f})")
    if not agreement_z <= z_limit:
        failures.append(f"posterior means differ from the reference's by {agreement_z:.2f} Monte Carlo "
                        f"standard errors (limit {z_limit:.2f})")
    if not predictive_error <= PREDICTIVE_RTOL:
        failures.append(f"posterior predictive differs from the reference's by {predictive_error:.3g} "
                        f"relative (limit {PREDICTIVE_RTOL:g})")
    if failures:
        raise IncorrectResult("; ".join(failures))
    return figures
