"""One network for a fleet: the latency tables of a search and their bands, from what the user gave.

`--lut A.json --lat 60:70 --lut B.json --lat :120` searches on A (its latency is the objective) and keeps every
evaluated architecture inside both bands. The i-th `--lat` (or `--lat-rel`) belongs to the i-th `--lut`; with
several tables every table is given its band, all of them as `--lat` or all as `--lat-rel` (with one `--ref`
priced on each table, or one `--ref` per table): a band given once for several tables is refused, since which
table it was meant for cannot be told. Each table prices at its own precision (`--precision` is the first
table's); two tables of one device at one precision are refused, and so is a table that does not cover the space
(naming the missing keys, `LatencyPredictor`). A run records its other tables in `SearchSettings.fleet`;
`hnas.workflows.search.assemble_search` puts a new one together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.settings import SearchSettings
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from latency.predict import LatencyPredictor


@dataclass(frozen=True)
class Bands:
    """Each table's band as given: `lat` (ms) or `lat_rel` with `ref`, one per table (`refs`: one for every table
    or one each)."""

    lat: list[Band | None]
    lat_rel: list[Band | None]
    refs: list[Architecture | None]


def pair_bands(
    n: int, lats: list[str] | None, lat_rels: list[str] | None, refs: list[Architecture] | None = None
) -> Bands:
    """The bands of `n` tables paired with them in order (one table: at most one `--lat`, `--lat-rel` and `--ref`,
    as ever; no table: no band); anything that does not pair up is one line naming the rule."""
    lats, lat_rels, refs = lats or [], lat_rels or [], refs or []
    if n == 0 and (lats or lat_rels):
        raise HnasError("a latency band (--lat, --lat-rel) needs the LUT that prices it (--lut)")
    if n <= 1:
        if len(lats) > 1 or len(lat_rels) > 1 or len(refs) > 1:
            raise HnasError(
                "one --lut takes one --lat (or --lat-rel with --ref): give another --lut for each other band"
            )
    else:
        if lats and lat_rels:
            raise HnasError(
                f"{n} tables: give each its band in ms (--lat, {n} times) or each its band relative to --ref "
                f"(--lat-rel, {n} times), not some of each: which table a band is for cannot be told otherwise"
            )
        given, flag = (lat_rels, "--lat-rel") if lat_rels else (lats, "--lat")
        if len(given) != n:
            raise HnasError(
                f"{n} --lut and {len(given)} {flag}: the i-th {flag} is the i-th table's band, so give one per table "
                f"(`{flag} :` leaves a table's band open)"
            )
        if refs and len(refs) not in (1, n):
            raise HnasError(f"{n} --lut and {len(refs)} --ref: give one --ref (priced on every table) or one per table")
    k = max(n, 1)
    return Bands(
        lat=[Band.parse(t) for t in lats] + [None] * (k - len(lats)),
        lat_rel=[Band.parse(t, "--lat-rel") for t in lat_rels] + [None] * (k - len(lat_rels)),
        refs=refs_per_table(refs, k) or [None] * k,
    )


def refs_per_table(refs: list, n: int) -> list:
    """The reference of each of `n` tables: one `--ref` is priced on every table, else the i-th is the i-th's."""
    return refs * n if len(refs) == 1 else list(refs)


def open_tables(luts: list[str], space: SearchSpace, precision: str | None = None) -> list[LatencyPredictor]:
    """Each table's predictor on `space`: the first at `precision` (its own when None), the others at their own;
    two tables of the same device at the same precision are refused (one line naming both)."""
    from latency.build import device_name, same_device

    tables = []
    for i, path in enumerate(luts):
        pred = LatencyPredictor.from_file(path, space, precision=precision if i == 0 else None)
        for j, other in enumerate(tables):
            if same_device(other.lut.device, pred.lut.device) and other.precision == pred.precision:
                raise HnasError(
                    f"--lut {luts[j]} and --lut {path} are both {pred.precision} tables of "
                    f"{device_name(pred.lut.device)}: a fleet holds one table per device and precision; drop one"
                )
        tables.append(pred)
    return tables


@dataclass(frozen=True)
class Fleet:
    """A search's latency tables, opened on its deployment space: the objective's first, then the others
    (`SearchSettings.fleet`), with the names lines, results and figures give them."""

    names: list[str]
    tables: list[LatencyPredictor]

    @property
    def latency(self) -> LatencyPredictor:
        """The objective's table."""
        return self.tables[0]

    @property
    def more(self) -> tuple[tuple[str, LatencyPredictor], ...]:
        """The other tables, named (what `Pipeline` is handed)."""
        return tuple(zip(self.names[1:], self.tables[1:], strict=True))

    def lines(self, search: SearchSettings) -> list[str]:
        """One line per table of a fleet: its role, precision, file and band."""
        if len(self.tables) == 1:
            return []
        bands = search.bands()
        return [
            f"latency {'objective' if i == 0 else 'constraint'} {name}: {t.precision} entries of {Path(t.lut_name)}, "
            f"band {band} ms"
            for i, (name, t, band) in enumerate(zip(self.names, self.tables, bands, strict=True))
        ]


def open_fleet(lut: str, search: SearchSettings, space: SearchSpace, precision: str | None = None) -> Fleet:
    """The tables of a search on `space`: `lut` (the objective's, at `precision` when given) and its settings'
    others, each at its own precision (`open_tables`)."""
    from hnas.settings import table_names

    luts = search.luts(lut)
    return Fleet(table_names(luts), open_tables(luts, space, precision))
