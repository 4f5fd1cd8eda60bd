"""How it is measured: the pytest benchmarks, the measuring helpers, correctness checks, metadata."""
