"""Stand-ins for the real world, for the demo, tests and benchmarks: not part of the product.

- :mod:`workflows.standins.synthetic` writes deterministic Cole CSV exports;
- :mod:`workflows.standins.emailbison_server` is a local EmailBison API on 127.0.0.1 with
  fault switches (its in-memory state lives in :mod:`workflows.standins._emailbison_api`);
- :mod:`workflows.standins.demo` runs a synthetic month end to end (``orchestrator demo``).
"""
