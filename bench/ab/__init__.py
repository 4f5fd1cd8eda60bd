"""`ab`: base against head measured in the same job, for a CI regression gate. `runner` starts
each side's long-lived `worker` processes and runs the sequential looks; `protocol` is the wire
format between them. The statistics are `reports.verdicts` and `reports.gate`, which `regress`
uses too."""
