"""What it says: reads the suite's benchmark JSON files (never imports `bench`) and writes reports."""
