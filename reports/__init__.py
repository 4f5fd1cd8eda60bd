"""What it says: reads the suite's benchmark JSON files (never imports `bench`) and writes reports."""

import matplotlib

matplotlib.use("Agg")  # charts are written to files, never shown: no display needed (CI, servers)
