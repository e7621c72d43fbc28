"""How long will this take? Estimates measured on this device, printed before a student waits.

- :func:`estimated` wraps the loop of a long cell (a sweep, a grid of samplers): once its first item
  has run it prints how long the whole loop will take, extrapolated from that item's time;
- :func:`span` and :func:`device_name` format the time and the device for those lines (the
  training loop formats its own estimate, measured over its first steps, with both).

    for w in progress.estimated(scales, "the guidance sweep"):
        images = sample(model, n, labels, w=w)

Items of unequal cost take a ``cost`` (for example the number of network evaluations): the first
item's seconds per unit of cost price the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")

#: loops estimated to take less than this many seconds in all print nothing
QUIET_BELOW_S = 20.0


def span(seconds: float) -> str:
    """``"45 s"``, ``"4 min"`` or ``"1.5 h"``: a duration as a student would say it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def device_name(device: torch.device | str | None = None) -> str:
    """``"cpu"``, or the GPU's name where there is one (the device the estimate holds for)."""
    device = torch.device(device) if device is not None else None
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def estimated(
    items: Iterable[T],
    work: str,
    *,
    cost: Callable[[T], float] | None = None,
    device: torch.device | str | None = None,
    quiet_below_s: float = QUIET_BELOW_S,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[T]:
    """Yield ``items`` one by one; after the first, print the whole loop's estimated time.

    The estimate is the first item's seconds per unit of ``cost`` (1 per item without one) times
    the total cost. It includes the first item's warm-up, so it leans long. Nothing is printed for a
    single item or for loops estimated under ``quiet_below_s`` seconds.
    """
    items = list(items)
    costs = [float(cost(item)) if cost is not None else 1.0 for item in items]
    if any(c < 0 for c in costs):
        raise ValueError(f"costs must be non-negative, got {costs}")
    total = sum(costs)
    started = clock()
    for k, item in enumerate(items):
        yield item
        if k == 0 and len(items) > 1 and costs[0] > 0:
            first = clock() - started
            whole = first / costs[0] * total
            if whole >= quiet_below_s:
                print(
                    f"{work}: about {span(whole)} in all on {device_name(device)} (the first of {len(items)} "
                    f"took {span(first)}; estimated from it)",
                    flush=True,
                )
