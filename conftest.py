"""Loads the suite's pytest plugin (`bench.plugin`: the options and the set-up before JAX starts)
for every pytest run from the project root (`pytest bench` and `pytest tests`). `jaxbench run`
loads the same plugin wherever the suite is installed."""

pytest_plugins = ["jaxbench.bench.plugin"]
