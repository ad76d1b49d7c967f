"""Numeric ranges that more than one command shares, and the one argparse type that checks them.

A range typed in two places drifts: the live CLI accepted ``--temperature``
up to 10 while the engine refused anything above 2. So a shared range is one
:class:`Range` here (or beside the thing it describes, like the model
folder's temperature range in :mod:`model.bundle`), and a command line gets
its argparse type from it with :meth:`Range.arg`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


def number(kind: type = float, lo: float | None = None, hi: float | None = None, what: str = "") -> Callable[[str], float]:
    """An argparse type: a finite int/float within [lo, hi], with a one-line message otherwise."""

    def show(x: float) -> str:
        # whole-number limits in full: 4294957295, not 4.29496e+09
        return str(int(x)) if kind is int or float(x).is_integer() else f"{x:g}"

    def conv(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a {'whole number' if kind is int else 'number'}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{s!r} is not a finite number")
        if lo is not None and hi is not None and not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{s} is outside {show(lo)}..{show(hi)}{what}")
        if lo is not None and v < lo:
            raise argparse.ArgumentTypeError(f"{s} must be at least {show(lo)}{what}")
        return v

    return conv


@dataclass(frozen=True)
class Range:
    """A closed range of ints or floats; ``None`` leaves that side open."""

    lo: float | None = None
    hi: float | None = None
    kind: type = float
    unit: str = ""  # appended to messages, with its leading space (" BPM")

    def __contains__(self, v: object) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
            return False
        return (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)

    def arg(self) -> Callable[[str], float]:
        """The argparse type for this range."""
        return number(self.kind, self.lo, self.hi, self.unit)


POSITIVE_INT = Range(1, kind=int)  # counts: -n, --steps, --samples, --limit, --batch-size
NONNEGATIVE = Range(0.0)  # rates and temperatures where no model bounds them (--lr, eval --temperature)
BPM = Range(20.0, 400.0, unit=" BPM")  # tempo written to files and played live
# Seeds of sample, eval and train: numpy refuses negative ones. (The live performer also keeps
# the seeds it takes after S, S+1, S+2 ..., below 2**32; that limit is its own.)
SEED = Range(0, kind=int)
