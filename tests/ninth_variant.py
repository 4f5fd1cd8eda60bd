"""A plugin that adds a variant by writing one record, as the README says a new variant is added
(`PYTEST_PLUGINS=tests.ninth_variant pytest bench ...`): bf16 and remat together."""

from jaxbench.workloads.variants import VARIANTS, Variant

NINTH = Variant("bf16_remat", "`remat` with bf16 compute; train only", modes=("train",),
                precision="bfloat16", remat=True)
VARIANTS[NINTH.name] = NINTH
