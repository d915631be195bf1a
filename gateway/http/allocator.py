"""glibc's allocator, set for a long-running server: large blocks are mapped and given back.

glibc serves an allocation of at least ``M_MMAP_THRESHOLD`` bytes with its own mapping and
returns it to the system when it is freed. By default that threshold is dynamic: every freed
mapped block raises it to that block's size (up to 32 MiB), and from then on blocks of that size
come from the heap, where the holes they leave when freed stay resident. Under sustained traffic
(cache tables resizing, registry answers of tens of kilobytes) the soak saw the main heap gain
about a megabyte of free space a minute — 10 MiB of holes after seven minutes, with the memory in
use flat. Setting the threshold explicitly keeps it at glibc's own starting value, 128 KiB, and
turns the adjustment off; the heap then stayed flat (0.4 MiB free).
"""

from __future__ import annotations

import ctypes
import os
import platform

#: ``mallopt`` parameter number of the mmap threshold (glibc's ``malloc.h``).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024
#: glibc reads this variable at start; an operator who set it keeps their value.
ENV_OVERRIDE = "MALLOC_MMAP_THRESHOLD_"


def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES`; whether it was set.

    False, changing nothing, where the C library is not glibc or ``MALLOC_MMAP_THRESHOLD_`` is
    set in the environment (the operator's value stands).
    """
    if os.environ.get(ENV_OVERRIDE) is not None or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
