"""Architectures: one op per searchable layer, in three interchangeable forms.

- integer vector: index into each layer's candidates (what the search manipulates);
- string: compact tokens, stages separated by `|`, e.g. `K3E1|K5E3-K3E6-ID-ID|...` (parsed in one place);
- JSON: `{"space": name, "ops": ["IBConv_K3_E1", ...], "arch": "<string>"}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hnas.core.errors import HnasError
from hnas.core.schema import ListOf, Obj, Str, check
from hnas.spec.ops import OpSpec, parse_op
from hnas.spec.parts import Part
from hnas.spec.space import SearchSpace
from hnas.spec.vectors import ArchCodec

_SPLIT = re.compile(r"[\s|,\-;]+")


@dataclass(frozen=True)
class Architecture:
    """A chosen op per layer of a space (validated on construction)."""

    space: SearchSpace
    ops: tuple[OpSpec, ...]

    def __post_init__(self):
        layers = self.space.layers
        if len(self.ops) != len(layers):
            raise HnasError(f"architecture has {len(self.ops)} layers but space {self.space.name!r} has {len(layers)}")
        for layer, op in zip(layers, self.ops):
            if op not in layer.candidates:
                allowed = ", ".join(o.name for o in layer.candidates)
                raise HnasError(
                    f"{layer.label}, {layer.shape.text()} s{layer.shape.stride}: {op.name} is not allowed here; "
                    f"allowed: {allowed}"
                )

    def __str__(self) -> str:
        groups: dict[int, list[str]] = {}
        for layer, op in zip(self.space.layers, self.ops):
            groups.setdefault(layer.stage, []).append(op.short)
        return "|".join("-".join(g) for g in groups.values())

    def to_vector(self) -> np.ndarray:
        """Index of each layer's op among that layer's candidates."""
        return np.array([layer.candidates.index(op) for layer, op in zip(self.space.layers, self.ops)], dtype=np.int64)

    def to_dict(self) -> dict:
        """JSON form."""
        return {"space": self.space.name, "arch": str(self), "ops": [op.name for op in self.ops]}

    def parts(self) -> list[Part]:
        """The network's parts in execution order: fixed parts, and the chosen op in every searchable layer."""
        ops = iter(self.ops)
        return [slot.part(next(ops)) if slot.searchable else slot.part() for slot in self.space.slots]


def parse_arch(text: str, space: SearchSpace) -> Architecture:
    """Parse the string form (tokens `K5E6`/`IBConv_K5_E6`/`ID`, separated by `-`, `|`, `,` or spaces)."""
    tokens = [t for t in _SPLIT.split(text.strip()) if t]
    if not tokens:
        raise HnasError("empty architecture: give one op per layer, e.g. the output of `hnas space sample`")
    if "|" in text:  # stages are marked: each group must hold exactly its stage's layers
        groups = [len([t for t in _SPLIT.split(g.strip()) if t]) for g in text.split("|")]
        want = [st.repeats for st in space.skeleton.stages]
        if groups != want:
            raise HnasError(
                f"architecture {text!r}: '|' separates the stages, which have {want} layers, but the groups have "
                f"{groups}; move the '|' or write the ops with '-' only"
            )
    return Architecture(space, tuple(parse_op(t) for t in tokens))


def from_vector(space: SearchSpace, vector) -> Architecture:
    """Architecture from a vector of candidate indices."""
    vec = np.asarray(vector).astype(np.int64).ravel()
    if vec.size != space.num_layers:
        raise HnasError(f"vector has {vec.size} entries but space {space.name!r} has {space.num_layers} layers")
    ops = []
    for layer, i in zip(space.layers, vec):
        if not 0 <= i < len(layer.candidates):
            raise HnasError(f"{layer.label}: index {i} out of range 0..{len(layer.candidates) - 1}")
        ops.append(layer.candidates[i])
    return Architecture(space, tuple(ops))


ARCH_SCHEMA = Obj(
    {"space": Str(), "arch": Str(nonempty=True), "ops": ListOf(Str(nonempty=True), 1)},
    optional=frozenset({"space", "arch", "ops"}),
    extra=True,  # files that carry an architecture among other figures (results rows, verify.json)
    rule=lambda d: None if "ops" in d or "arch" in d else "needs 'ops' (list of op names) or 'arch' (string form)",
)


def from_dict(data: dict, space: SearchSpace, where: str = "architecture JSON") -> Architecture:
    """Inverse of `Architecture.to_dict` (the `ops` list wins over the string), checked against `ARCH_SCHEMA`."""
    check(data, ARCH_SCHEMA, where)
    try:
        if "ops" in data:
            return Architecture(space, tuple(parse_op(o) for o in data["ops"]))
        return parse_arch(data["arch"], space)
    except HnasError as exc:
        raise HnasError(f"{where}: {exc}") from None


def sample(space: SearchSpace, n: int, rng: np.random.Generator) -> list[Architecture]:
    """`n` architectures drawn uniformly per layer."""
    return [from_vector(space, v) for v in ArchCodec(space).sample(rng, n)]


def sample_across_sizes(space: SearchSpace, n: int, rng: np.random.Generator, draws: int = 4) -> list[Architecture]:
    """`n` architectures spread from the space's smallest to its largest networks: network i leans by
    b_i (evenly spaced in [-1, 1], shuffled) and each of its layers takes the smallest (b < 0) or the largest
    (b > 0) of 1 + round(|b| (draws - 1)) uniform draws, ordered by (expansion, kernel), the identity smallest.
    Uniform draws (`sample`) cluster around the space's middle; a fit over these covers every size a search
    may pick."""
    biases = rng.permutation(np.linspace(-1.0, 1.0, n)) if n > 1 else np.zeros(n)
    order = [sorted(range(len(c)), key=lambda i, c=c: (c[i].expand, c[i].kernel)) for c in space.candidates]
    out = []
    for b in biases:
        m = 1 + int(round(abs(b) * (draws - 1)))
        vec = []
        for ranked in order:
            picks = rng.integers(0, len(ranked), size=m)  # positions in the size order
            vec.append(ranked[int(picks.min() if b < 0 else picks.max())])
        out.append(from_vector(space, np.array(vec, dtype=np.int64)))
    return out
