"""Bayesian inference with NumPyro: hierarchical logistic regression, NUTS, posterior predictive.

Synthetic data are drawn from known parameters: per feature a population mean `mu` and scale
`tau`, per group coefficients `beta = mu + tau * z` (the model samples `z`, the non-centred form
that keeps NUTS out of the funnel), labels `y ~ Bernoulli(sigmoid(x . beta[group]))`. One run
samples `chains` NUTS chains (warm-up then draws), then computes the posterior predictive
probability of held-out points over `predictive_draws` posterior draws, with 90% intervals.

Variants (the step variants' names, mapped onto sampling):

| variant        | NUTS chains                                   | posterior predictive                 |
|----------------|-----------------------------------------------|--------------------------------------|
| `baseline`     | one after another (a Python loop over chains) | a Python loop over draws, eager      |
| `vmap`         | vectorised: `vmap` over chains                | `Predictive` over all draws, eager   |
| `jit_vmap`     | vectorised                                    | `Predictive` over all draws, jitted  |
| `multi_device` | in parallel, chains split over devices        | jitted, draws split over devices     |

A chain's sampling loop is always compiled (as NumPyro's `MCMC` does); it is compiled ahead of
time here, because `MCMC.run` recompiles on every call and its timing would be mostly compile.
The kernel, its step-size and mass-matrix adaptation and the diagnostics are NumPyro's own.

Where each part lives:
- `model.py`: the model, the presets and the synthetic data (with the truth they were drawn from);
- `sampling.py`: the NUTS chains, one after another, vectorised or split over devices;
- `predictive.py`: the posterior predictive, per variant;
- `diagnostics.py`: the posterior summary (ESS, split R-hat) and the check against the truth and
  the reference variant;
- `run.py`: one variant's run as the bench times it (`BayesRun`) and its figures.
"""

from __future__ import annotations

from jaxbench.workloads import WORKFLOW_VARIANTS
from jaxbench.workloads.bayes.diagnostics import MAX_SPLIT_RHAT, check, posterior_summary
from jaxbench.workloads.bayes.model import LATENT_SITES, SIZES, BayesSize, Dataset, make_dataset, make_model
from jaxbench.workloads.bayes.predictive import predictive
from jaxbench.workloads.bayes.run import BayesRun, start_run
from jaxbench.workloads.workflow import Workflow

WORKLOAD = Workflow(name="bayes", mode_label="infer", sizes=SIZES, variants=WORKFLOW_VARIANTS["bayes"],
                    start_run=start_run, check=check, throughput=("draws_per_s", "draws"))

__all__ = ["LATENT_SITES", "MAX_SPLIT_RHAT", "SIZES", "WORKLOAD", "BayesRun", "BayesSize", "Dataset", "check",
           "make_dataset", "make_model", "posterior_summary", "predictive", "start_run"]
