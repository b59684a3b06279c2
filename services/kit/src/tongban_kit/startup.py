"""What every long-running process does once its start-up is done."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Start-up objects (modules, models, schemas) never die: keep them out of every later full garbage collection,
    whose pauses would otherwise set the latency tail."""
    gc.collect()
    gc.freeze()
