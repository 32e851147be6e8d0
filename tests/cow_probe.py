"""How much a forked child copies when it merely uses its parent's objects.

    python tests/cow_probe.py immortal|mortal   (PYTHONPATH: the ecosystem directory)

The parent builds a heap shaped like a library's (functions with their code and constants,
strings in tuples), then does what ``ecosystem_host.preload`` does before forking: collect, make
the heap immortal (``immortal``) or not (``mortal``), freeze. The child calls every function and
reads every string: nothing of the parent's is written but reference counts (and, on 3.13, the
first call's specialisation of a function's first instruction). It prints one JSON line: the
child's growth of private dirty memory in KiB, the reference count of a shared function, and how
many objects were made immortal.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

from ecosystem_host.heap import immortalise_heap

COUNT = 40_000


def private_dirty_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text(encoding="ascii").splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    raise RuntimeError("no Private_Dirty in smaps_rollup")


def build_heap() -> tuple[list[Any], list[tuple[str, str]]]:
    namespace: dict[str, Any] = {}
    source = "".join(
        f"def f{n}(x):\n    return (x, {n}, 'constant {n}', {float(n)})\n" for n in range(COUNT)
    )
    exec(compile(source, "<library>", "exec"), namespace)
    functions = [namespace[f"f{n}"] for n in range(COUNT)]
    strings = [(f"name-{n}", f"value-{n}" * 3) for n in range(COUNT)]
    return functions, strings


def use(functions: list[Any], strings: list[tuple[str, str]]) -> int:
    total = 0
    for function in functions:
        total += len(function(1))
    for pair in strings:
        for text in pair:
            total += len(text)
    return total


def main() -> None:
    mode = sys.argv[1]
    gc.disable()
    heap = build_heap()
    gc.collect()
    changed = immortalise_heap() if mode == "immortal" else 0
    gc.freeze()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        gc.enable()
        before = private_dirty_kib()
        use(*heap)
        gc.collect()
        report = {
            "growth_kib": private_dirty_kib() - before,
            "refcount": sys.getrefcount(heap[0][0]),
            "immortal": changed,
        }
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        written = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the child failed: status {status}")
    print(written.decode())


if __name__ == "__main__":
    main()
