"""numba kernels that stay usable in forked worker processes.

numba's OpenMP threading layer (the one it picks on Linux without TBB) is not fork-safe:
a child forked from a process that has run a parallel kernel is terminated, or hangs, at
its first parallel region ("fork() called from a process already using GNU OpenMP").
That is what ``multiprocessing`` pools (fork is the default start method on Linux up to
Python 3.13), torch ``DataLoader`` workers and joblib's ``multiprocessing`` backend do.
Each parallel kernel is therefore compiled twice, from one factory: with ``prange``, and
as a serial loop, which a forked child uses (it is one of several workers, so its own
threads would only oversubscribe the cores anyway). Both versions are cached on disk;
they differ in their closure, which keeps their cache entries apart.
"""

from __future__ import annotations

import os

_FORKED = False


def _after_fork_in_child():
    global _FORKED
    _FORKED = True


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere processes are spawned, not forked
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ForkAwareKernel:
    """A numba kernel made by ``factory(parallel)``: the parallel version in the process
    that imported sigflow (and in spawned ones), the serial one in forked children."""

    def __init__(self, factory):
        self._factory = factory
        self._versions = {}

    def _version(self, parallel):
        kernel = self._versions.get(parallel)
        if kernel is None:  # compiled (or loaded from the cache) at its first call
            kernel = self._versions[parallel] = self._factory(parallel)
        return kernel

    def __call__(self, *args):
        return self._version(not _FORKED)(*args)
