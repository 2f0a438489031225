"""Process-level CPU settings for training: the allocator keeps what torch frees."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from dfl.ops.memory import keep_freed_memory, freed_memory_kept
    assert keep_freed_memory() and freed_memory_kept()
for _ in range(10):  # warm up: the first allocations fault in either way (glibc settles in a few)
    torch.ones(16 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # a training step's pattern: large temporaries made and freed again
    torch.ones(16 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's allocator only")
def test_keep_freed_memory_stops_refaulting_large_temporaries():
    # 20 x 64 MB freshly mapped is ~330k page faults; reused heap memory faults in once, during the warm-up
    stock, kept = _faults("stock"), _faults("keep")
    assert stock > 100_000
    assert kept < stock // 20


def test_keep_freed_memory_is_harmless_where_it_does_not_apply(monkeypatch):
    from dfl.ops import memory

    monkeypatch.setattr(memory.sys, "platform", "darwin")
    monkeypatch.setattr(memory, "_KEPT", False)
    assert memory.keep_freed_memory() is False
    assert memory.freed_memory_kept() is False
