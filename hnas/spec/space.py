"""Search spaces: the macro skeleton of the paper's Table 1 and layer-wise candidate operations (Table 2).

A `SearchSpace` is a skeleton plus, for every searchable layer, the tuple of ops allowed there. Presets
share one op list across layers; pruning (later stages of HNAS) just yields a space with fewer candidates
per layer. Spaces and their files round-trip through `to_dict`/`from_dict`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.io import load_yaml, read_json, read_text
from hnas.core.schema import Any, Bool, Int, ListOf, Obj, Opt, Str, check
from hnas.spec.ops import (
    IDENTITY_OP,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_EXPAND,
    MAX_KERNEL,
    MAX_SIZE,
    LayerShape,
    OpSpec,
    parse_op,
)
from hnas.spec.parts import Slot

SCHEMA = "hnas.spec.space/1"

# what a space may hold, besides the shape limits of `hnas.spec.ops` (checked where a space file is read)
MAX_REPEATS = 64  # blocks per stage
MAX_STAGES = 32
MAX_LAYERS = 256  # searchable layers in all
MAX_SPACE_FILE_BYTES = 4 * 2**20  # a layer-wise space of MAX_LAYERS layers is well under 1 MiB


@dataclass(frozen=True)
class StageSpec:
    """One SBS stage: output channels, number of blocks, stride of its first block, optional fixed expansion."""

    out_channels: int
    repeats: int
    stride: int
    expand: int | None = None


@dataclass(frozen=True)
class Skeleton:
    """Table 1: stem conv, SBS stages, 1x1 conv to `head_channels`, global pool, fc to `num_classes`."""

    stages: tuple[StageSpec, ...]
    stem_channels: int = 32
    head_channels: int = 1280
    resolution: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    stem_kernel: int = 3
    stem_stride: int = 2

    def __post_init__(self):
        for name, most in _SKELETON_LIMITS.items():
            if not 1 <= getattr(self, name) <= most:
                raise HnasError(f"skeleton: {name} must be an integer from 1 to {most}")
        if not 1 <= len(self.stages) <= MAX_STAGES:
            raise HnasError(f"skeleton: give from 1 to {MAX_STAGES} stages")
        for i, st in enumerate(self.stages, 1):
            if not (1 <= st.out_channels <= MAX_CHANNELS and 1 <= st.repeats <= MAX_REPEATS and st.stride in (1, 2)):
                raise HnasError(
                    f"skeleton stage {i}: out_channels must be from 1 to {MAX_CHANNELS}, repeats from 1 to "
                    f"{MAX_REPEATS} and stride 1 or 2"
                )
        layers = sum(st.repeats for st in self.stages)
        if layers > MAX_LAYERS:
            raise HnasError(f"skeleton: {layers} blocks in all; a space may have at most {MAX_LAYERS}")

    def slots(self) -> tuple[Slot, ...]:
        """Every place of the network in execution order: the stem, one searchable layer per block of every
        stage (no candidates yet), the final 1x1 conv to `head_channels`, pooling + the classifier."""
        stem = LayerShape(self.resolution, self.in_channels, self.stem_channels, self.stem_stride)
        out = [Slot("Stem", stem, kernel=self.stem_kernel)]
        size, ch, index = stem.out_size, self.stem_channels, 0
        for s, st in enumerate(self.stages, 1):
            for pos in range(1, st.repeats + 1):
                shape = LayerShape(size, ch, st.out_channels, st.stride if pos == 1 else 1)
                index += 1
                out.append(Slot("Block", shape, index=index, stage=s, position=pos))
                size, ch = shape.out_size, st.out_channels
        out.append(Slot("Conv1x1", LayerShape(size, ch, self.head_channels, 1)))
        out.append(Slot("PoolFC", LayerShape(size, self.head_channels, self.num_classes, 1)))
        return tuple(out)

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        d = asdict(self)
        d["stages"] = [{k: v for k, v in asdict(st).items() if v is not None} for st in self.stages]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> Skeleton:
        """Inverse of `to_dict`; unknown keys are an error."""
        data = dict(data)
        try:
            stages = tuple(StageSpec(**st) for st in data.pop("stages"))
            return cls(stages=stages, **data)
        except (TypeError, KeyError) as exc:
            raise HnasError(f"skeleton: {exc}; expected keys: stages, {', '.join(_SKELETON_KEYS)}") from None


_SKELETON_KEYS = [f for f in Skeleton.__dataclass_fields__ if f != "stages"]
_SKELETON_LIMITS = {
    "stem_channels": MAX_CHANNELS,
    "head_channels": MAX_CHANNELS,
    "resolution": MAX_SIZE,
    "num_classes": MAX_CLASSES,
    "in_channels": MAX_CHANNELS,
    "stem_kernel": MAX_KERNEL,
}


@dataclass(frozen=True)
class SearchSpace:
    """A skeleton plus layer-wise candidate ops (index j of an architecture picks from `candidates[j]`)."""

    name: str
    skeleton: Skeleton
    candidates: tuple[tuple[OpSpec, ...], ...]
    identity_in_first_layer: bool = False
    slots: tuple[Slot, ...] = field(init=False, repr=False, compare=False)
    layers: tuple[Slot, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        slots = list(self.skeleton.slots())
        searchable = [i for i, slot in enumerate(slots) if slot.searchable]
        if len(self.candidates) != len(searchable):
            raise HnasError(
                f"space {self.name!r}: {len(self.candidates)} candidate lists given for {len(searchable)} layers"
            )
        for i, cands in zip(searchable, self.candidates):
            slots[i] = replace(slots[i], candidates=tuple(cands))
            self._check_layer(slots[i])
        object.__setattr__(self, "slots", tuple(slots))
        object.__setattr__(self, "layers", tuple(slots[i] for i in searchable))

    def _check_layer(self, layer: Slot) -> None:
        where = f"space {self.name!r}, {layer.label}"
        if not layer.candidates:
            raise HnasError(f"{where}: no candidate operations; keep at least one")
        if len(set(layer.candidates)) != len(layer.candidates):
            raise HnasError(f"{where}: an operation is listed twice")
        fixed = self.skeleton.stages[layer.stage - 1].expand
        for op in layer.candidates:
            if op.is_identity:
                if not layer.shape.keeps_shape:
                    raise HnasError(f"{where}: Identity cannot map {layer.shape.text()} (stride {layer.shape.stride})")
                if layer.position == 1 and not self.identity_in_first_layer:
                    raise HnasError(f"{where}: Identity is forbidden in the first layer of a stage")
            elif fixed is not None and op.expand != fixed:
                raise HnasError(f"{where}: {op.name} breaks the stage's fixed expansion E{fixed}")

    @classmethod
    def from_ops(
        cls, name: str, skeleton: Skeleton, ops: list[OpSpec], identity_in_first_layer: bool = False
    ) -> SearchSpace:
        """Share one op list across layers, applying the paper's rules per layer.

        A stage with a fixed expansion gets the list's kernels at that expansion; Identity is dropped where
        it cannot keep the shape and, unless allowed, from the first layer of every stage.
        """
        cands = []
        for slot in skeleton.slots():
            if not slot.searchable:
                continue
            fixed = skeleton.stages[slot.stage - 1].expand
            layer_ops: list[OpSpec] = []
            for op in ops:
                first = slot.position == 1 and not identity_in_first_layer
                if op.is_identity and (not slot.shape.keeps_shape or first):
                    continue
                if fixed is not None:
                    op = op.with_expand(fixed)
                if op not in layer_ops:
                    layer_ops.append(op)
            cands.append(tuple(layer_ops))
        return cls(name, skeleton, tuple(cands), identity_in_first_layer)

    def size(self) -> int:
        """Number of architectures: the product of the candidate counts (an exact integer)."""
        return math.prod(len(c) for c in self.candidates)

    @property
    def num_layers(self) -> int:
        """Number of searchable layers."""
        return len(self.layers)

    def with_candidates(self, candidates: list[tuple[OpSpec, ...]], name: str | None = None) -> SearchSpace:
        """The same skeleton with other layer-wise candidates (pruning produces this)."""
        return SearchSpace(
            name or self.name, self.skeleton, tuple(map(tuple, candidates)), self.identity_in_first_layer
        )

    def with_skeleton(self, **changes) -> SearchSpace:
        """The same candidates on a changed skeleton (e.g. another resolution or number of classes)."""
        return SearchSpace(self.name, replace(self.skeleton, **changes), self.candidates, self.identity_in_first_layer)

    def ops(self) -> list[OpSpec]:
        """Every op used by any layer, in a stable order."""
        return sorted({op for c in self.candidates for op in c})

    def describe(self) -> dict:
        """What `hnas space show --json` adds to `to_dict`: every searchable layer's shapes and candidates, and the
        keys of the fixed parts (derived, so a file holding them reads back only when they still agree)."""
        layers = []
        for L in self.layers:
            i, o = L.shape.text().split("->")
            layers.append(
                {
                    "layer": L.index,
                    "stage": L.stage,
                    "block": L.position,
                    "input": i,
                    "output": o,
                    "stride": L.shape.stride,
                    "candidates": [op.name for op in L.candidates],
                }
            )
        return {"layers": layers, "fixed": [s.key() for s in self.slots if not s.searchable]}

    def to_dict(self) -> dict:
        """Plain-data form (always layer-wise, so a pruned space round-trips)."""
        return {
            "schema": SCHEMA,
            "name": self.name,
            "skeleton": self.skeleton.to_dict(),
            "identity_in_first_layer": self.identity_in_first_layer,
            "candidates": [[op.name for op in c] for c in self.candidates],
            "size": str(self.size()),
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "space file") -> SearchSpace:
        """Read a space: `candidates` (one list per layer) or `ops` (one shared list), plus a skeleton or `base`;
        checked against `SPACE_SCHEMA` first, so a bad file is one line naming the field."""
        check(data, SPACE_SCHEMA, where)
        try:
            space = cls._build(data)
        except HnasError as exc:
            raise HnasError(f"{where}: {exc}") from None
        derived = space.describe()
        for key in ("layers", "fixed"):
            if key in data and data[key] != derived[key]:
                raise HnasError(
                    f"{where}: {key} does not match the skeleton and candidates it is derived from: change the "
                    f"skeleton or candidates, and delete {key}"
                )
        return space

    @classmethod
    def _build(cls, data: dict) -> SearchSpace:
        base = PRESETS[data["base"]]() if "base" in data else None
        name = str(data.get("name") or (base.name if base else "custom"))
        skeleton = base.skeleton if base is not None else None
        if "skeleton" in data:
            skel_data = {**base.skeleton.to_dict(), **data["skeleton"]} if base is not None else data["skeleton"]
            skeleton = Skeleton.from_dict(skel_data)
        id_first = bool(data.get("identity_in_first_layer", base.identity_in_first_layer if base else False))
        if "candidates" in data:
            cands = [tuple(parse_op(o) for o in layer) for layer in data["candidates"]]
            return cls(name, skeleton, tuple(cands), id_first)
        ops = [parse_op(o) for o in data["ops"]] if "ops" in data else base.ops()
        return cls.from_ops(name, skeleton, ops, id_first)

    def save(self, path: str | Path) -> None:
        """Write the space as JSON, atomically."""
        from hnas.core.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


# --- presets (paper Tables 1 and 2) -------------------------------------------------------------

_REPEATS = (1, 4, 4, 4, 4, 4, 1)
_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def table1_skeleton(stem: int, widths: tuple[int, ...], resolution: int = 224, num_classes: int = 1000) -> Skeleton:
    """Table 1 with the given stem width and stage widths; the first SBS has its expansion fixed to 1."""
    stages = tuple(
        StageSpec(w, r, s, 1 if i == 0 else None) for i, (w, r, s) in enumerate(zip(widths, _REPEATS, _STRIDES))
    )
    return Skeleton(stages=stages, stem_channels=stem, resolution=resolution, num_classes=num_classes)


BASIC_OPS = tuple(OpSpec(k, e) for k in (3, 5, 7) for e in (3, 6)) + (IDENTITY_OP,)
LARGE_OPS = tuple(OpSpec(k, e) for k in (3, 5, 7) for e in range(1, 7)) + (IDENTITY_OP,)


def basic() -> SearchSpace:
    """Table 2 left column on Table 1 with widths 32-16-32-40-80-96-192-320 (size 3*6^6*7^15)."""
    return SearchSpace.from_ops("basic", table1_skeleton(32, (16, 32, 40, 80, 96, 192, 320)), list(BASIC_OPS))


def large() -> SearchSpace:
    """Table 2 both columns, widths 16-16-24-40-80-96-192-320 (size 3*18^6*19^15)."""
    return SearchSpace.from_ops("large", table1_skeleton(16, (16, 24, 40, 80, 96, 192, 320)), list(LARGE_OPS))


def proxyless() -> SearchSpace:
    """The basic ops on widths 32-16-24-40-80-96-192-320: the ProxylessNAS mobile space."""
    return SearchSpace.from_ops("proxyless", table1_skeleton(32, (16, 24, 40, 80, 96, 192, 320)), list(BASIC_OPS))


PRESETS = {"basic": basic, "large": large, "proxyless": proxyless}


def _preset_name(name: str) -> str:
    if name not in PRESETS:
        raise HnasError(f"unknown space {name!r}: use one of {', '.join(PRESETS)} or a .json/.yaml space file")
    return name


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A preset by name, or a space described in a JSON or YAML file."""
    text = str(name_or_path)
    if text in PRESETS:
        return PRESETS[text]()
    path = Path(text)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        missing = f"give an existing file or one of {', '.join(PRESETS)}"
        if path.suffix.lower() == ".json":
            data = read_json(path, None, "space file", missing, "fix it", MAX_SPACE_FILE_BYTES)
        else:
            data = load_yaml(read_text(path, "space file", missing, MAX_SPACE_FILE_BYTES), f"space file {text}")
        return SearchSpace.from_dict(data, f"space file {text}")
    _preset_name(text)
    raise AssertionError("unreachable")


# --- the space file's schema -------------------------------------------------------------------------------

_STAGE = Obj(
    {
        "out_channels": Int(1, at_most=MAX_CHANNELS),
        "repeats": Int(1, at_most=MAX_REPEATS),
        "stride": Int(allowed=(1, 2)),
        "expand": Opt(Int(1, at_most=MAX_EXPAND)),
    },
    optional=frozenset({"expand"}),
)


def _skeleton_rule(d: dict) -> str | None:
    if d.get("stem_kernel", 3) % 2 == 0:
        return "stem_kernel must be odd"
    layers = sum(st["repeats"] for st in d.get("stages", []))
    if layers > MAX_LAYERS:
        return f"the stages hold {layers} blocks in all; a space may have at most {MAX_LAYERS}"
    return None


_SKELETON = Obj(
    {
        "stages": ListOf(_STAGE, 1, MAX_STAGES),
        **{name: Int(1, at_most=most) for name, most in _SKELETON_LIMITS.items()},
        "stem_stride": Int(allowed=(1, 2)),
    },
    optional=frozenset(
        {
            "stem_channels",
            "head_channels",
            "resolution",
            "num_classes",
            "in_channels",
            "stem_kernel",
            "stem_stride",
            "stages",
        }
    ),
    rule=_skeleton_rule,
)


def _space_rule(d: dict) -> str | None:
    if "skeleton" not in d and "base" not in d:
        return "give a 'skeleton' or a 'base' preset"
    if "base" not in d and "stages" not in d.get("skeleton", {}):
        return "skeleton: lacks stages (or give a 'base' preset to start from)"
    if "base" in d and d["base"] not in PRESETS:
        return f"base {d['base']!r} is not a preset; use one of {', '.join(PRESETS)}"
    if "ops" in d and "candidates" in d:
        return "give 'ops' (shared by all layers) or 'candidates' (one list per layer), not both"
    if "ops" not in d and "candidates" not in d and "base" not in d:
        return "give 'ops' (shared by all layers) or 'candidates' (one list per layer)"
    return None


SPACE_SCHEMA = Obj(
    {
        "schema": Str(),
        "name": Str(nonempty=True),
        "base": Str(),
        "skeleton": _SKELETON,
        "ops": ListOf(Str(nonempty=True), 1),
        "candidates": ListOf(ListOf(Str(nonempty=True), 1), 1),
        "identity_in_first_layer": Bool(),
        "size": Str(),
        "layers": Any(),  # what `space show --json` derives (`SearchSpace.describe`): must agree when given
        "fixed": Any(),
    },
    optional=frozenset(
        {
            "schema",
            "name",
            "base",
            "skeleton",
            "ops",
            "candidates",
            "identity_in_first_layer",
            "size",
            "layers",
            "fixed",
        }
    ),
    rule=_space_rule,
)
