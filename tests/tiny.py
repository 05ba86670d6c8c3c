"""A tiny search space for fast tests (9 LUT entries, converts in seconds)."""

from hnas.spec.ops import OpSpec
from hnas.spec.space import SearchSpace, Skeleton, StageSpec


def tiny_space() -> SearchSpace:
    skeleton = Skeleton(
        stages=(StageSpec(8, 1, 1, expand=1), StageSpec(16, 2, 2)),
        stem_channels=8,
        head_channels=32,
        resolution=32,
        num_classes=10,
    )
    return SearchSpace.from_ops("tiny", skeleton, [OpSpec(3, 3), OpSpec(5, 6), OpSpec()])
