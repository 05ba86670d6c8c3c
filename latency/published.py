"""Published per-op phone latency tables (ProxylessNAS, Once-for-All) mapped onto our LUT keys.

The tables are third-party data (see ../shared/reference/luts/SOURCES.md). Their keys are never parsed
into shapes here: for every op and fixed part of the given search spaces we render the key the published
table would use for that op at that shape (`published_key`) and look it up (`map_published`). Table entries
that no op of the spaces renders to are reported as `unmapped`; our keys the table lacks as `missing`.

Formats:

- `proxylessnas`: `expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0`
  (expansion ratio; `idskip:1` exactly when stride 1 and in == out channels), `Conv-input:...` (stem),
  `Conv_1-input:...` (final 1x1) and `Logits-input:7x7x1280-output:1000` (pool + fc); entries carry
  `count`, `mean` (ms) and `var`.
- `ofa`: the same plus `-se:0-hs:0` on inverted bottlenecks (ours have neither squeeze-excite nor h-swish),
  with `expand:` the absolute number of middle channels (in_ch * E); entries carry `count`, `mean`, `std`.
  OFA's head is AvgPool2D / Conv_2 / Logits on 1x1 maps, so our `PoolFC` (pool + fc on the 7x7 map) renders
  a `Logits-input:7x7x...` key that an OFA table does not have. Note that the OFA key format does not
  record the activation of `Conv` / `Conv_1`: OFA's own stem and final 1x1 use h-swish where ours use
  ReLU6, yet OFA's estimator queries the same key for both, so such figures map (as the format dictates).

Neither format records a stem kernel size (both measured a 3x3 stem), so a stem with another kernel has no
published key and is always reported missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.io import MiB, load_yaml, read_text
from hnas.core.schema import Num, preview
from hnas.spec.ops import LayerShape
from hnas.spec.parts import Part
from hnas.spec.space import SearchSpace
from latency.items import dedupe, items_for_space
from latency.lut import Lut, now_iso

FORMATS = ("proxylessnas", "ofa")
_SPREAD = {"proxylessnas": "var", "ofa": "std"}
_PUBLISHED_STEM_KERNEL = 3


@dataclass(frozen=True)
class PublishedFigure:
    """One published measurement: the table's own key, mean and standard deviation in ms, sample count."""

    source_key: str
    mean_ms: float
    std_ms: float
    count: int


@dataclass
class ImportResult:
    """Outcome of `map_published`.

    `mapped`: our key -> figure; `unmapped`: the table's keys that no op/shape of the spaces renders to
    (sorted); `missing`: our keys of the spaces that the table lacks (sorted).
    """

    mapped: dict[str, PublishedFigure] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


MAX_PUBLISHED_BYTES = 16 * MiB  # the published tables are ~10-15 KB


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise HnasError(f"unknown published table format {fmt!r}: use one of {', '.join(FORMATS)}")


def _number(value, what: str, where: str) -> float:
    if Num().problem(value, what):
        raise HnasError(f"{where}: {what} must be a finite number, got {preview(value)}; fix or remove that entry")
    return float(value)


def read_published_table(path: str | Path, fmt: str) -> dict[str, PublishedFigure]:
    """Read a published YAML table (`key -> {count, mean, var|std}`) into figures keyed by the table's keys."""
    _check_format(fmt)
    path = Path(path)
    text = read_text(path, "published table", f"give the path of the {fmt} YAML file", MAX_PUBLISHED_BYTES)
    data = load_yaml(text, f"published table {path}")
    if not isinstance(data, dict) or not data:
        raise HnasError(
            f"published table {path}: expected a non-empty mapping 'key: {{count, mean, {_SPREAD[fmt]}}}' "
            f"at top level, got {type(data).__name__}"
        )
    spread = _SPREAD[fmt]
    other = next(f for f, s in _SPREAD.items() if f != fmt)
    out: dict[str, PublishedFigure] = {}
    for key, entry in data.items():
        where = f"published table {path}, entry {key!r}"
        if not isinstance(key, str):
            raise HnasError(f"{where}: keys must be strings like 'Conv-input:224x224x3-output:112x112x32'")
        if not isinstance(entry, dict):
            raise HnasError(f"{where}: expected a mapping with count, mean and {spread}, got {type(entry).__name__}")
        lacking = [f for f in ("count", "mean", spread) if f not in entry]
        if lacking:
            hint = f" (it has '{_SPREAD[other]}': is this a {other} table? read it with fmt={other!r})"
            raise HnasError(
                f"{where}: lacks {', '.join(lacking)}{hint if _SPREAD[other] in entry else ''}; "
                f"a {fmt} entry needs count, mean and {spread}"
            )
        count = entry["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise HnasError(f"{where}: count must be a positive integer, got {count!r}; fix or remove that entry")
        mean = _number(entry["mean"], "mean", where)
        value = _number(entry[spread], spread, where)
        if mean < 0 or value < 0:
            raise HnasError(f"{where}: mean and {spread} must not be negative; fix or remove that entry")
        std = math.sqrt(value) if spread == "var" else value
        out[key] = PublishedFigure(key, mean, std, count)
    return out


# --- key rendering: one function per format and part kind, from OUR spec ---------------------------


def _dims(size: int, ch: int) -> str:
    return f"{size}x{size}x{ch}"


def _io(s: LayerShape) -> str:
    return f"input:{_dims(s.in_size, s.in_ch)}-output:{_dims(s.out_size, s.out_ch)}"


def _stem(part: Part, fmt: str) -> str | None:
    return f"Conv-{_io(part.shape)}" if part.kernel == _PUBLISHED_STEM_KERNEL else None


def _block(part: Part, fmt: str) -> str | None:
    op, s = part.op, part.shape
    if op.is_identity:
        return None
    expand = op.expand if fmt == "proxylessnas" else s.in_ch * op.expand  # OFA: absolute middle channels
    key = f"expanded_conv-{_io(s)}-expand:{expand}-kernel:{op.kernel}-stride:{s.stride}-idskip:{int(s.keeps_shape)}"
    return key + ("-se:0-hs:0" if fmt == "ofa" else "")


def _conv1x1(part: Part, fmt: str) -> str:
    return f"Conv_1-{_io(part.shape)}"


def _pool_fc(part: Part, fmt: str) -> str:
    s = part.shape
    return f"Logits-input:{_dims(s.in_size, s.in_ch)}-output:{s.out_ch}"


# how each part kind of the registry (`hnas.spec.parts.KINDS`) reads in the published formats
_RENDER = {"Stem": _stem, "Block": _block, "Conv1x1": _conv1x1, "PoolFC": _pool_fc}


def published_key(fmt: str, part: Part) -> str:
    """The key a `fmt` table would use for one of our parts."""
    _check_format(fmt)
    key = _RENDER[part.kind](part, fmt) if part.kind in _RENDER else None
    if key is None:
        raise HnasError(
            f"{part.key or part.op.name} has no {fmt} table key (the format has no Identity and only 3x3 stems)"
        )
    return key


def map_published(table: dict[str, PublishedFigure], fmt: str, spaces: list[SearchSpace]) -> ImportResult:
    """Look up every op (except Identity) of every layer and every fixed part of `spaces` in a published table."""
    _check_format(fmt)
    if isinstance(spaces, SearchSpace):
        spaces = [spaces]
    result = ImportResult()
    used: set[str] = set()
    for part in sorted(dedupe([p for sp in spaces for p in items_for_space(sp)]), key=lambda p: p.key):
        theirs = _RENDER[part.kind](part, fmt) if part.kind in _RENDER else None
        if theirs is not None and theirs in table:
            result.mapped[part.key] = table[theirs]
            used.add(theirs)
        else:
            result.missing.append(part.key)
    result.unmapped = sorted(set(table) - used)
    return result


PUBLISHED_PHONES = {"proxylessnas": "Google Pixel 1", "ofa": "Samsung Note10"}


def import_table(
    file: str | Path, fmt: str, spaces: list[SearchSpace], path: str | Path, device_name: str | None = None
) -> tuple[Lut, ImportResult]:
    """A LUT (saved at `path`) holding a published table's figures under our keys for `spaces`; the table says
    where the figures came from (file, its sha256, the phone) and that nothing here measured them."""
    from hnas.core.io import sha256_file

    _check_format(fmt)
    result = map_published(read_published_table(file, fmt), fmt, spaces)
    device = {
        "id": f"published-{fmt}",
        "kind": "published",
        "model": device_name or PUBLISHED_PHONES[fmt],
        "cpu": None,
        "core": None,
        "source_file": Path(file).name,
    }
    runtime = {"kind": "published", "name": f"{fmt} table", "tflite_version": None, "sha256": sha256_file(file)}
    table = Lut.new(device, runtime, {"imported_from": fmt}, Path(path))
    parts = {p.key: p for sp in spaces for p in items_for_space(sp)}
    for key, fig in sorted(result.mapped.items()):
        table.entries[key] = {
            "spec": parts[key].to_spec(),
            "median_ms": None,
            "mean_ms": fig.mean_ms,
            "std_ms": fig.std_ms,
            "min_ms": None,
            "runs": fig.count,
            "repeats": 1,
            "measured_at": None,
            "imported_at": now_iso(),
            "source": f"imported:{fmt}",
            "source_key": fig.source_key,
        }
    table.save()
    return table, result
