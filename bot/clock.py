"""The wall clock the core reads. Tests inject their own to move time without waiting."""

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns seconds since the epoch, like time.time."""

system_clock: Clock = time.time
