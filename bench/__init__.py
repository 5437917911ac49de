"""The benchmark suite: ``make bench`` (``python -m bench``).

Every figure is printed beside a baseline measured in the same run, with the ratio and the
goal from issue 4; the table is also written to ``bench/results/<date>.json`` with the
machine it ran on. Families: :mod:`bench.enqueue`, :mod:`bench.throughput`,
:mod:`bench.latency`, :mod:`bench.pipeline`, :mod:`bench.growth`. ::

    python -m bench --quick                       # small sizes, under two minutes
    python -m bench --only enqueue,latency        # some families only
    python -m bench --growth-rows 200000          # a smaller growth database
    python -m bench --strict                      # exit 1 when a goal is missed

The exit status is 1 when a family could not run (and, with ``--strict``, when a goal is
missed). Worker logs go to ``.orchestrator/bench/logs``.
"""
