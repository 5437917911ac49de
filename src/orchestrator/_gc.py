"""Python's garbage collector, tuned once a worker process has started.

A worker keeps tens of thousands of objects alive between jobs (the imported modules, the
registry, pools, the leads of a window being uploaded) and allocates at a high rate while it
works (a 500-lead upload builds some 6,000 dicts). With the interpreter's defaults, a young
collection runs every 700 allocations and every tenth of those promotes survivors, so full
collections come every few seconds and each walks everything alive. Measured with a
collector callback in a worker running one PT4 of 100,000 leads (`python -m bench --only
limits`): 19% of the worker's CPU went to collecting, 60 ms per full collection; with the
start-up objects frozen and young collections every 10,000 allocations, 4%, and CPU per
500-lead upload fell from 32 to 27-28 ms. Garbage in cycles is still collected, a little
later; nothing here turns the collector off.
"""

from __future__ import annotations

import gc

#: Allocations (less deallocations) between young collections; the interpreter's is 700.
YOUNG_THRESHOLD = 10_000


def tune_for_worker() -> None:
    """Freeze what start-up left alive (it lives as long as the process: no collection need
    walk it again) and collect young objects less often."""
    gc.collect()
    gc.freeze()
    young, middle, oldest = gc.get_threshold()
    if young:  # 0: the collector was switched off on purpose; leave it so
        gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, oldest)
