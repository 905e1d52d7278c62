"""``DistributedSampler``: each rank's share of a dataset's indices, for one epoch.

Every epoch the indices ``0 .. n-1`` are shuffled with a generator seeded by ``seed + epoch``
(the same permutation on every rank), padded by repeating its first indices until the length
divides by the world size (or cut to a multiple with ``drop_last=True``), and rank ``r`` takes
every ``world_size``-th index from position ``r``. So within an epoch the ranks' shares are
disjoint and together cover every index once, plus the padding's repeats (none when ``n``
divides by the world size).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from . import group as groups


class DistributedSampler:
    """The indices of ``dataset`` (a length, or anything with ``len``) that rank ``rank`` of
    ``num_replicas`` visits this epoch; call :meth:`set_epoch` before each epoch for a new
    order. ``rank``/``num_replicas`` default to the process group's (a world of one without
    one).

    >>> s = ad.distributed.DistributedSampler(10, num_replicas=2, rank=1, shuffle=False)
    >>> list(s)
    [1, 3, 5, 7, 9]
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        n = dataset if isinstance(dataset, int) else len(dataset)
        group = groups.current
        size = num_replicas if num_replicas is not None else (
            group.world_size if group is not None else 1)
        me = rank if rank is not None else (group.rank if group is not None else 0)
        if size < 1 or not 0 <= me < size:
            raise ValueError(f"gpuad.distributed.DistributedSampler: rank {me} of "
                             f"num_replicas={size}; a rank must lie in [0, num_replicas)")
        if n < 0 or (drop_last and n < size):
            raise ValueError(f"gpuad.distributed.DistributedSampler: a dataset of {n} items "
                             f"cannot be split over {size} ranks"
                             + (" with drop_last=True" if drop_last else ""))
        self.n, self.num_replicas, self.rank = n, size, me
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        self.num_samples = n // size if drop_last else -(-n // size)
        self.total_size = self.num_samples * size

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order (the same on every rank)."""
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, as an int64 array."""
        order = (np.random.default_rng(self.seed + self.epoch).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        if self.total_size > self.n:
            order = np.resize(order, self.total_size) if self.n else order
        return order[:self.total_size][self.rank::self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples
