"""Runs under torchrun: which rank this is, barriers, small collectives, and a search's accuracy evaluations
split across the ranks.

Every rank runs the same search (same seed, same generations). `SharedAccuracy` deals each generation's
not-yet-measured architectures out round robin, in the order the search asks for them; each rank evaluates its
share, and the results are all-gathered into every rank's cache, so every rank goes on with the same accuracies,
the same archive and the same next generation as one process would. Rank 0 alone writes files; the others wait at
barriers. Decisions that depend on files (`exists`) are rank 0's, broadcast, so every rank makes the same
collective calls in the same order. Outside torchrun (world size 1) every helper is a plain local call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hnas.core.errors import HnasError


def _group_active() -> bool:
    """Whether a process group of more than one rank is up (torchrun, after `hnas.train.init_distributed`)."""
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the process group (0 outside torchrun)."""
    import torch.distributed as tdist

    return tdist.get_rank() if _group_active() else 0


def world_size() -> int:
    """How many processes share the work (1 outside torchrun)."""
    import torch.distributed as tdist

    return tdist.get_world_size() if _group_active() else 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank is here (nothing outside torchrun)."""
    if _group_active():
        import torch.distributed as tdist

        tdist.barrier()


def gather(obj) -> list:
    """Every rank's `obj` (a small picklable value), in rank order, on every rank; `[obj]` outside torchrun."""
    if not _group_active():
        return [obj]
    import torch.distributed as tdist

    out: list = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def from_main(obj):
    """Rank 0's `obj` (small and picklable) on every rank; `obj` itself outside torchrun."""
    if not _group_active():
        return obj
    import torch.distributed as tdist

    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def exists(path: str | Path) -> bool:
    """Whether `path` is a file as rank 0 sees it (rank 0 writes the run files, so its view is current): every
    rank gets the same answer, and so takes the same branch and makes the same collective calls."""
    return bool(from_main(Path(path).is_file() if is_main() else None))


def write_on_main(write: Callable[[], None]) -> None:
    """Run `write` on rank 0 only, then wait until every rank is here, so that the file is there for all."""
    if is_main():
        write()
    barrier()


class SharedAccuracy:
    """An accuracy source (`source(archs) -> np.ndarray`, optionally with `cache`, a dict keyed
    `(state_tag, str(arch))`, and `state_tag`) whose batches are split across the ranks.

    A call finds the batch's architectures that are not cached yet (each once), deals them out round robin in
    batch order (rank r takes the r-th, (r + world)-th, ...), evaluates this rank's share with `source`, gathers
    every rank's results into the cache (`source.cache`, or the wrapper's own when the source has none) and returns
    the whole batch's accuracies, the same on every rank. Every rank must make the same calls in the same order.
    `evaluated` counts the architectures this rank evaluated."""

    def __init__(self, source: Callable[[Sequence], np.ndarray]):
        self.source = source
        own = getattr(source, "cache", None)
        self.cache: dict[tuple[str, str], float] = own if own is not None else {}
        self.state_tag = getattr(source, "state_tag", "")
        self.evaluated = 0

    def accuracy(self, arch) -> float:
        """One architecture's accuracy (a collective call: every rank asks for the same one)."""
        return float(self([arch])[0])

    def __call__(self, archs: Sequence) -> np.ndarray:
        """The accuracies of `archs`, in order, on every rank (each rank evaluates its share of the new ones)."""
        keys = [str(a) for a in archs]
        todo = {k: a for k, a in zip(keys, archs) if (self.state_tag, k) not in self.cache}
        if todo:
            names = list(todo)[rank() :: world_size()]
            scores = self.source([todo[k] for k in names]) if names else []
            if len(scores) != len(names):
                raise HnasError(
                    f"the accuracy source gave {len(scores)} scores for {len(names)} architectures: it must give "
                    "one per architecture, in order"
                )
            self.evaluated += len(names)
            for part in gather([(k, float(v)) for k, v in zip(names, scores)]):
                self.cache.update(((self.state_tag, k), v) for k, v in part)
        return np.array([self.cache[(self.state_tag, k)] for k in keys], dtype=float)


def shared(source: Callable[[Sequence], np.ndarray]) -> Callable[[Sequence], np.ndarray]:
    """`source` split across the ranks (`SharedAccuracy`) under torchrun; `source` itself otherwise."""
    return SharedAccuracy(source) if world_size() > 1 else source
