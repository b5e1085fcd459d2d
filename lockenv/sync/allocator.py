"""The C allocator, set for moving hundreds of MB through buffers of a few MB.

A large download passes through Python as blocks of up to 1 MiB (a socket read, each a
new ``bytes``), and a deflated member as blocks of up to 4 MiB of inflated output.
glibc's malloc maps a block that large fresh from the kernel and unmaps it when freed,
unless it is under its *mmap threshold*; that threshold follows the last mapped block
freed, and a socket read shrunk to what arrived (a few hundred KB) sets it below the next
1 MiB read, so almost every block is mapped anew: the kernel faults in and zeroes every
page of it before the data is copied in (measured: 86,000 page faults for a cold sync of
800 MiB of wheels, 0.3 s of CPU stored and 0.8 s deflated, about a sixth of the sync).
`keep_freed_buffers` fixes the threshold above those block sizes, and the heap's trim
threshold above what a few downloads hold at once, so that freed blocks are reused.

glibc only (its ``mallopt``); elsewhere nothing changes.  Standard library only.
"""

from __future__ import annotations

import sys

__all__ = ["keep_freed_buffers"]

# Above the largest block allocated per read or inflate step (`lockenv.http`'s 1 MiB
# reads, `lockenv.sync.pypi.wheel`'s 4 MiB inflate blocks); below glibc's upper bound
# for it (32 MiB on 64-bit).
_MMAP_THRESHOLD = 8 << 20
# Free memory at the top of a heap returned to the kernel only past this: above what the
# downloads in flight hold (8 threads x 8 blocks read ahead of their consumer, 1 MiB each).
_TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3

_done = False


def keep_freed_buffers() -> bool:
    """Have glibc's malloc keep freed blocks of a few MB for reuse, for the rest of this
    process (see the module doc); whether it did.  Call it before a transfer of many MB
    starts; once is enough (later calls do nothing).  Loads ``ctypes`` (5 ms): not for the
    paths that move little."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)  # the C library the interpreter runs on
        mallopt = libc.mallopt
        if not _is_glibc(libc):
            return False
    except (ImportError, OSError, AttributeError):
        return False
    # mallopt answers 1 when it took the setting; the threshold first: it is the one that
    # saves the work (setting it also stops glibc moving both thresholds by itself).
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    return _done


def _is_glibc(libc: object) -> bool:
    # musl and others have a mallopt that means something else, or nothing.
    return hasattr(libc, "gnu_get_libc_version")
