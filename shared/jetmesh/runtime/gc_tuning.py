"""The garbage collector of a long-running mesh process, set for a hop's many short-lived
objects.

Every hop allocates a few hundred objects (envelopes, headers, futures, dicts) that live
for a few milliseconds; CPython collects its youngest generation every 700 allocations,
and its oldest whenever a quarter more objects have survived, each time walking every
object the process imported. Measured in an echo agent under ``bench-hop-2m``
(gc.callbacks): 7.6% of its CPU in the collector with Python's defaults, each full
collection 60-80 ms; 2.3% with the settings' default (``gc_young_threshold``, 20,000),
most of it at the start (docs/durability.md, "The garbage collector").

:func:`settle_heap` runs once, when the process has imported and built what it keeps:
it collects, then freezes what survived (``gc.freeze``: the collector no longer walks
it) and collects the young generation every ``young`` allocations. Cycles are still
collected; a frozen object is never freed, which is what a module table already is.
"""

from __future__ import annotations

import gc

__all__ = ["settle_heap"]


def settle_heap(young: int) -> None:
    """Freeze what this process holds now and collect its young objects every ``young``
    allocations; ``young`` 0 leaves the collector as it is."""
    if young <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
