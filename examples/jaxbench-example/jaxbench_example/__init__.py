"""An example outside package of jaxbench workloads (see README.md next to it)."""
