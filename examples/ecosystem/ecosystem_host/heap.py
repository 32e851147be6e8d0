"""The host parent's heap made fork-friendly: its pymalloc holes filled, its objects made
immortal (CPython 3.12 and 3.13), the C heap's free pages given back, so that forked children
copy as few shared pages as they can."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
import sysconfig
import types

_FILLER: list[object] = []


def _pymalloc_free_blocks() -> dict[int, int]:
    """Free blocks in partly used pymalloc pools, by block size (``sys._debugmallocstats``)."""
    import tempfile

    with tempfile.TemporaryFile() as report:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(report.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        report.seek(0)
        text = report.read().decode("ascii", "replace")
    free: dict[int, int] = {}
    sections = text.split("\n\n", 2)
    if len(sections) < 2:  # no pymalloc (PYTHONMALLOC=malloc, PYTHONTRACEMALLOC): nothing to fill
        return free
    for line in sections[1].splitlines():
        fields = line.split()
        if len(fields) == 5 and all(field.isdigit() for field in fields):
            free[int(fields[1])] = int(fields[4])
    return free


def fill_pymalloc_holes() -> int:
    """Occupy the free blocks of the parent's partly used pools, and keep them.

    Python allocates small objects from partly used pools first: a child's first allocations
    would land in the holes the parent's imports left all over its heap, and each one copies a
    shared page. Filled, a child's new objects go to fresh pools instead. Returns the blocks.
    """
    filled = 0
    for size, count in _pymalloc_free_blocks().items():
        _FILLER.extend(_block(size) for _ in range(count))
        filled += count
    return filled


def _block(size: int) -> object:
    """A new object that pymalloc puts in the ``size``-byte class."""
    if size <= 16:
        return object()
    if size <= 32:
        return float(size) + 0.5  # 24 bytes
    return bytes(size - sys.getsizeof(b""))


# CPython 3.12 and 3.13 (PEP 683): an object whose reference count has its low 32 bits all set is
# immortal, and Py_INCREF/Py_DECREF leave it alone (Include/object.h: _Py_IMMORTAL_REFCNT is
# UINT_MAX on 64-bit builds; pyo3-ffi's object.rs mirrors it). 3.14 moved to another encoding
# (ob_flags), debug builds with Py_TRACE_REFS put two pointers before the count and free-threaded
# builds split it: there, and on 3.11 which has no immortal objects, nothing is changed.
_IMMORTAL = 0xFFFFFFFF


def immortal_objects_unsupported() -> str | None:
    """Why this interpreter's objects cannot be made immortal, or None when they can."""
    version = ".".join(map(str, sys.version_info[:2]))
    if sys.implementation.name != "cpython" or not (3, 12) <= sys.version_info[:2] < (3, 14):
        return f"{sys.implementation.name} {version}: CPython 3.12 or 3.13 only"
    if ctypes.sizeof(ctypes.c_void_p) != 8 or hasattr(sys, "getobjects"):
        return f"Python {version}: a 32-bit or Py_TRACE_REFS build"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return f"Python {version}: a free-threaded build"
    return None


def immortalise_heap() -> int:
    """Make every object the parent holds immortal; returns how many were changed.

    A child that merely uses a shared function, class, string or constant writes its reference
    count, which copies the 4 KiB page it sits on: that was about half of a child's private
    memory. An immortal object is never written by reference counting, nor freed: what a child
    drops or replaces stays in the shared pages, a bounded cost paid once. The walk goes from
    the collector's objects through their referents, and into code objects (which the collector
    does not track) through their constants and names. An object already immortal (None, small
    ints, interned strings, or one this walk reached before) is skipped: the count is the mark.
    """
    if immortal_objects_unsupported():
        return 0
    offset = 0 if sys.byteorder == "little" else 4  # the low 32 bits of the 64-bit count
    ones = _IMMORTAL.to_bytes(4, sys.byteorder)
    stack = gc.get_objects()
    changed = 0
    while stack:
        obj = stack.pop()
        if sys.getrefcount(obj) >= _IMMORTAL:
            continue
        ctypes.memmove(id(obj) + offset, ones, 4)
        changed += 1
        stack.extend(gc.get_referents(obj))
        if isinstance(obj, types.CodeType):
            stack.extend((obj.co_consts, obj.co_names, obj.co_filename, obj.co_name))
            stack.extend((obj.co_qualname, obj.co_linetable, obj.co_exceptiontable))
    return changed


def release_free_heap() -> None:
    """Give the C heap's free pages back to the kernel before forking (glibc ``malloc_trim``):
    neither the parent nor any child then keeps them resident."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
