"""Where this process's memory is, below Python: glibc's ``mallinfo2``.

Resident memory (RSS) mixes memory in use with memory the allocator freed but keeps
(fragmentation) and with one-off mappings of a new block, so a rising RSS alone does not say
whether something leaks. The C heap's own accounting does: a leak below Python (FFmpeg,
ONNX Runtime, SQLite, numpy buffers) raises the bytes in use; fragmentation raises only the
bytes kept free. Python's small objects live in pymalloc arenas that glibc does not count;
``sys.getallocatedblocks()`` counts those.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h, glibc 2.33 and later)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class CHeap:
    """The C heap of this process, in bytes, summed over glibc's arenas."""

    in_use: int  # allocated and not freed, in the arenas (``uordblks``)
    free: int  # freed but kept by the allocator (``fordblks``): fragmentation
    mapped: int  # large allocations mapped on their own (``hblkhd``), all in use

    @property
    def allocated(self) -> int:
        """Everything allocated and not freed: what a leak below Python raises."""
        return self.in_use + self.mapped


def c_heap() -> CHeap | None:
    """The C heap now, or None where the C library is not glibc 2.33 or later."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return CHeap(in_use=info.uordblks, free=info.fordblks, mapped=info.hblkhd)
