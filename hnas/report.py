"""`hnas report RUN`: an HTML page with PNG figures of a search run, numbers in tables beside them.

Figures: the Pareto front of every searched stage (one-shot accuracy against predicted latency), the
per-layer operation probability heatmap of every stage (paper Figs. 3 and 7), the search-space size per
stage (Table 4's "Size"), the supernet validation accuracy per epoch (Fig. 6), predicted against
measured end-to-end latency (`hnas verify`), and, when verify ran with an op profile, each layer's time inside
the network against its LUT entry.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.core.io import atomic_write_text, read_json
from hnas.core.plots import pyplot as _plt
from hnas.core.plots import save_png as _save
from hnas.core.schema import POSITIVE_MS, Bool, ListOf, Num, Obj, Opt, Str
from hnas.runs import run_lut
from hnas.searchrun import SearchRun, latencies_text, row_latencies
from hnas.spec.space import SearchSpace

# what the report reads of the latency toolkit's files (the engine does not import it; a test checks that the
# files `hnas verify` and `hnas lut validate` write fit these)
VERIFY_SCHEMA = Obj(
    {
        "arch": Str(nonempty=True),
        "calibrated": Bool(),
        "predicted_ms": POSITIVE_MS,
        "measured_ms": POSITIVE_MS,
        "error": Opt(Num()),
        "op_profile": ListOf(
            Obj({"layer": Str(), "ops": ListOf(Str()), "ms": Num(at_least=0), "lut_ms": Num(at_least=0)}, extra=True)
        ),
        "op_profile_total_ms": Num(at_least=0),
        "op_profile_method": Str(),
    },
    optional=frozenset({"error", "op_profile", "op_profile_total_ms", "op_profile_method"}),
    extra=True,
)
VALIDATE_SCHEMA = Obj(
    {
        "networks": ListOf(Obj({"measured_ms": POSITIVE_MS, "predicted_calibrated_ms": POSITIVE_MS}, extra=True), 1),
        "held_out_calibrated": Obj({"mape": Num(at_least=0), "within_5": Num(at_least=0)}, extra=True),
    },
    extra=True,
)


def _read(path: Path, spec, what: str):
    return read_json(path, spec, what) if path.is_file() else None


def pareto_plot(searches: dict[int, dict], band: Band, max_rank: int, more: list[tuple[str, Band]] = ()):
    """One panel per searched stage: every evaluated architecture, those of rank < `max_rank` and the Pareto front
    against the objective's latency, the band drawn. A fleet (`more`: each other table's name and band, in the order
    of the rows' `latencies_ms` after the first) gains a row of panels per other table: the same architectures
    against that table's latency, the front marked and that table's band drawn."""
    plt = _plt()
    n = len(searches)
    rows_n = 1 + len(more)
    fig, axes = plt.subplots(rows_n, n, figsize=(4.4 * n, 3.8 * rows_n), squeeze=False, constrained_layout=True)
    for col, (k, rec) in enumerate(sorted(searches.items())):
        rows = rec["archive"]
        acc = np.array([r["accuracy"] for r in rows])
        rank = np.array([r["rank"] for r in rows])
        tables = [("", band, np.array([r["latency_ms"] for r in rows]))]
        for i, (name, b) in enumerate(more, start=1):
            tables.append((name, b, np.array([row_latencies(r)[i] for r in rows]) if rows else np.zeros(0)))
        for row, (name, b, lat) in enumerate(tables):
            ax = axes[row][col]
            ax.scatter(lat, acc, s=8, c="0.7", label=f"evaluated ({len(rows)})")
            sel = rank < max_rank
            ax.scatter(lat[sel], acc[sel], s=10, c="tab:blue", label=f"rank < {max_rank}")
            front = np.argsort(lat[rank == 1])
            what = "Pareto front" if not row else "Pareto front (of the objective)"
            ax.plot(lat[rank == 1][front], acc[rank == 1][front], "o-", c="tab:red", ms=4, label=what)
            for edge in (b.lo, b.hi):
                if edge is not None:
                    ax.axvline(edge, c="k", ls="--", lw=0.8)
            ax.set_title(f"stage {k}: search on stage {k - 1} supernet" + (f"\non {name}" if row else ""))
            ax.set_xlabel("predicted latency (ms)" + (f", {name}" if row else ""))
            ax.set_ylabel("one-shot top-1")
            ax.legend(fontsize=7, loc="lower right")
    return fig


def heatmap_plot(searches: dict[int, dict]):
    plt = _plt()
    n = len(searches)
    fig, axes = plt.subplots(n, 1, figsize=(10, 3.1 * n), squeeze=False, constrained_layout=True)
    for ax, (k, rec) in zip(axes[:, 0], sorted(searches.items())):
        layers = rec["distribution"]["layers"]
        ops = sorted({o for layer in layers for o in layer}, key=lambda o: (o == "Identity", o))
        m = np.full((len(ops), len(layers)), np.nan)
        for j, layer in enumerate(layers):
            for o, p in layer.items():
                m[ops.index(o), j] = p
        im = ax.imshow(m, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_yticks(range(len(ops)), [o.replace("IBConv_", "") for o in ops], fontsize=6)
        ax.set_xticks(range(len(layers)), [str(j + 1) for j in range(len(layers))], fontsize=7)
        ax.set_title(f"stage {k}: operation probability per layer (blank: op not a candidate)", fontsize=9)
        ax.set_xlabel("layer")
        fig.colorbar(im, ax=ax, fraction=0.02)
    return fig


def size_plot(sizes: list[tuple[str, int]]):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([s for s, _ in sizes], [np.log10(float(v)) for _, v in sizes], color="tab:green")
    ax.set_ylabel("log10(space size)")
    ax.set_title("search-space size per stage")
    return fig


def training_plot(histories: dict[int, list]):
    if not histories:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    offset = 0
    for k, hist in sorted(histories.items()):
        xs = [offset + h["epoch"] + 1 for h in hist]
        ax.plot(xs, [h["val_acc"] for h in hist], "o-", ms=3, label=f"stage {k} supernet")
        ax.plot(xs, [h["train_acc"] for h in hist], ":", lw=1, c=ax.lines[-1].get_color())
        offset = xs[-1] if xs else offset
    ax.set_xlabel("supernet epoch (cumulative)")
    ax.set_ylabel("top-1 (solid: val, dotted: train)")
    ax.set_title("supernet accuracy across stages")
    ax.legend(fontsize=7)
    return fig


def latency_plot(verify: dict, validate: dict | None):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    pts = []
    if validate:
        m = [r["measured_ms"] for r in validate["networks"]]
        p = [r.get("predicted_ms", r["predicted_calibrated_ms"]) for r in validate["networks"]]  # as the table predicts
        ax.scatter(m, p, s=10, c="0.45", label=f"LUT validation ({len(m)} random networks)", zorder=2)
        pts += m + p
    ax.scatter(
        [verify["measured_ms"]],
        [verify["predicted_ms"]],
        s=60,
        c="tab:red",
        marker="*",
        label="searched architecture",
        zorder=3,
    )
    pts += [verify["measured_ms"], verify["predicted_ms"]]
    lo, hi = min(pts) * 0.9, max(pts) * 1.1
    xs = np.linspace(lo, hi, 5)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.95, xs * 1.05, color="0.9", label="+-5 %", zorder=0)  # under the points
    ax.set_xlabel("measured end-to-end latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("predicted against measured")
    return fig


def layer_profile_plot(verify: dict):
    """Per layer: time inside the whole network (op profile) against the LUT entry."""
    plt = _plt()
    rows = verify["op_profile"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.36 * len(rows)), 3.8), constrained_layout=True)
    ax.bar(x - 0.2, [r["lut_ms"] for r in rows], 0.4, label="LUT entry")
    ax.bar(x + 0.2, [r["ms"] for r in rows], 0.4, label="in the network (op profile)")
    ax.set_xticks(x, [r["layer"].replace("layer ", "L") for r in rows], rotation=70, fontsize=7)
    ax.set_ylabel("ms")
    total, lut_total = verify["op_profile_total_ms"], sum(r["lut_ms"] for r in rows)
    ax.set_title(
        f"per layer: profile sum {total:.2f} ms, LUT sum {lut_total:.2f} ms, measured {verify['measured_ms']:.2f} ms",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    return fig


def _figure(fig, path: Path) -> str | None:
    """Save a plot (None: nothing to plot) and return its file name."""
    return None if fig is None else _save(fig, path)


def _size(n) -> str:
    return "-" if n is None else f"{float(n):.3e}"


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build_report(run: str | Path, lut: str | None = None) -> Path:
    """Write RUN/report/index.html and its figures (the run's LUT checked by sha256; `lut`: where it moved);
    returns the page's path."""
    run = Path(run)
    folder = SearchRun.read(run)
    if folder is None or not folder.results_file.is_file():
        raise HnasError(f"{run} is not a finished search run (config.json and results.json are needed)")
    search = folder.search
    cfg = run_lut(folder.config, run, lut)
    results = folder.results()
    stages = search.stages
    searches = {k: rec for k in range(2, stages + 1) if (rec := folder.stage(k).search())}
    histories = {k: h for k in range(1, stages) if (h := folder.stage(k).trained())}
    out = run / "report"
    out.mkdir(exist_ok=True)
    space = SearchSpace.from_dict(cfg.space)
    sizes = [("stage 1", space.size())] + [
        (f"stage {k}", int(r["pruned_size"])) for k, r in sorted(searches.items()) if k < stages
    ]
    band = Band(*results["latency_band_ms"])
    tables = results.get("tables", [])  # a fleet's tables, the objective's first
    more = [(t["name"], Band(*t["band_ms"])) for t in tables[1:]]
    max_rank, p_th = search.max_rank, search.p_th
    sections = []
    stage_rows = [
        [
            s["stage"],
            _size(s.get("space_size") or s.get("searched_size")),
            "-" if s.get("supernet_val_acc") is None else f"{s['supernet_val_acc']:.3f}",
            f"{s['evaluated']} / {s['budget']}" if s.get("budget") else s.get("evaluated", "-"),
            "-" if s.get("best_accuracy") is None else f"{s['best_accuracy']:.3f}",
            "-" if s.get("best_latency_ms") is None else f"{s['best_latency_ms']:.2f}",
            s.get("best_arch", "-"),
        ]
        for s in results["stages"]
    ]
    sections.append(
        (
            "Stages",
            None,
            _table(
                [
                    "stage",
                    "space size",
                    "supernet val acc",
                    "evaluated / budget",
                    "best one-shot acc",
                    "latency ms",
                    "best architecture",
                ],
                stage_rows,
            ),
        )
    )
    if searches:
        sections.append(
            (
                "Pareto front per stage" + (", on every latency table" if more else ""),
                _figure(pareto_plot(searches, band, max_rank, more), out / "pareto.png"),
                _table(
                    ["stage", "evaluated", f"rank < {max_rank}", "Pareto set"],
                    [
                        [k, r["evaluated"], r["selected"], sum(1 for a in r["archive"] if a["rank"] == 1)]
                        for k, r in sorted(searches.items())
                    ],
                ),
            )
        )
        last = searches[max(searches)]["distribution"]["layers"]
        sections.append(
            (
                "Operation probability per layer",
                _figure(heatmap_plot(searches), out / "op_distribution.png"),
                _table(
                    ["layer", f"stage {max(searches)}: ops with p >= P_th = {p_th:g}"],
                    [
                        [
                            j + 1,
                            ", ".join(
                                f"{o.replace('IBConv_', '')} {p:.2f}"
                                for o, p in sorted(layer.items(), key=lambda kv: -kv[1])
                                if p >= p_th
                            ),
                        ]
                        for j, layer in enumerate(last)
                    ],
                ),
            )
        )
    sections.append(
        (
            "Search-space size",
            _figure(size_plot(sizes), out / "space_size.png"),
            _table(["stage", "size"], [[s, f"{v:.3e}"] for s, v in sizes]),
        )
    )
    fig = _figure(training_plot(histories), out / "supernet_accuracy.png")
    if fig:
        sections.append(
            (
                "Supernet accuracy",
                fig,
                _table(
                    ["stage", "epochs", "last train acc", "last val acc"],
                    [
                        [
                            k,
                            len(h),
                            f"{h[-1]['train_acc']:.3f}",
                            "-" if h[-1]["val_acc"] is None else f"{h[-1]['val_acc']:.3f}",
                        ]
                        for k, h in sorted(histories.items())
                        if h
                    ],
                ),
            )
        )
    verify = _read(run / "verify.json", VERIFY_SCHEMA, "verification")
    if verify:
        lut_path = Path(verify.get("lut") or cfg.lut)
        validate = _read(
            lut_path.parent / (lut_path.stem + "-validate") / "validate.json", VALIDATE_SCHEMA, "validation"
        )
        rows = [
            ["precision", verify.get("precision", "float32")],
            ["predicted (LUT" + (", calibrated)" if verify["calibrated"] else ")"), f"{verify['predicted_ms']:.3f}"],
            ["measured end to end", f"{verify['measured_ms']:.3f}"],
            ["error", "not reported: unstable" if verify.get("error") is None else f"{verify['error'] * 100:+.2f} %"],
        ]
        acc = verify.get("int8_accuracy")
        if acc:
            rows.append(
                [
                    f"top-1 on {acc['images']} {acc['split']} images, float32 -> int8",
                    f"{acc['float32_top1']:.4f} -> {acc['int8_top1']:.4f} ({acc['drop'] * 100:+.2f} points drop)",
                ]
            )
        if validate:
            applied = validate.get("calibration_applied", True)
            c = validate.get("held_out_applied", validate["held_out_calibrated"])
            rows.append(
                [
                    f"LUT validation ({'calibrated' if applied else 'raw LUT sum'}, held out)",
                    f"MAPE {c['mape'] * 100:.2f} %, {c['within_5'] * 100:.0f} % within 5 %",
                ]
            )
        sections.append(
            (
                "Predicted against measured latency",
                _figure(latency_plot(verify, validate), out / "latency.png"),
                _table(["", "value"], rows),
            )
        )
        if verify.get("op_profile"):
            prof_rows = [
                [r["layer"], " ".join(r["ops"]) or "-", f"{r['ms']:.3f}", f"{r['lut_ms']:.3f}"]
                for r in verify["op_profile"]
            ]
            sections.append(
                (
                    "Where the time goes, layer by layer",
                    _figure(layer_profile_plot(verify), out / "layers.png"),
                    f"<p>op profile: {html.escape(verify['op_profile_method'])}</p>"
                    + _table(["layer", "TFLite ops", "in network ms", "LUT ms"], prof_rows),
                )
            )
    shipped = card_html(run / "ship", "../ship")
    if shipped:
        sections.append(("The shipped model (hnas export)", None, shipped))
    best_rows = [
        [
            f"{r['accuracy']:.3f}",
            latencies_text(r),
            f"{r['macs'] / 1e6:.0f}",
            f"{r['params'] / 1e6:.2f}",
            r["arch"],
        ]
        for r in results["best"]
    ]
    sections.append(
        (
            "Best architectures inside the latency band",
            None,
            _table(
                ["one-shot top-1", "latency ms" + (" (" + " / ".join(t["name"] for t in tables) + ")" if more else "")]
                + ["MMACs", "M params", "architecture"],
                best_rows,
            ),
        )
    )
    if more:
        sections.insert(
            0,
            (
                "Latency tables (one network for every device)",
                None,
                _table(
                    ["table", "precision", "band ms", "file"],
                    [[t["name"], t["precision"], str(Band(*t["band_ms"])), t["lut"]] for t in tables],
                ),
            ),
        )
    fleet_note = html.escape("".join(f", {b} ms on {name}" for name, b in more))
    body = "".join(
        f"<section><h2>{html.escape(title)}</h2><div class='row'>"
        + (f"<img src='{img}' alt='{html.escape(title)}'>" if img else "")
        + f"<div>{tab}</div></div></section>"
        for title, img, tab in sections
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>HNAS run {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} .row{{display:flex;gap:2em;align-items:flex-start;
flex-wrap:wrap}} img{{max-width:900px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} h2{{border-bottom:1px solid #888}}</style></head>
<body><h1>HNAS run {html.escape(run.name)}</h1>
<p>space {html.escape(space.name)} ({space.size():.3e} architectures), data {html.escape(cfg.data)},
LUT {html.escape(str(cfg.lut))}, latency band {band} ms{fleet_note}, M = {stages}.</p>{body}</body></html>"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def card_html(folder: Path, href: str) -> str | None:
    """An HTML summary of the export (`hnas export`) in `folder` linking its card (`href`: the folder as the page
    reaches it), or None when there is none; a card that cannot be read is said so, not raised."""
    try:
        card = json.loads((Path(folder) / "card.json").read_text())
        a, files = card["accuracy"], card["files"]
        rows = [
            ("architecture", card["arch"]),
            (
                f"top-1 on {a['images']} test images",
                f"PyTorch {a['torch_top1']:.4f}, float32 {a['float32_top1']:.4f}, "
                f"int8 {a['int8_top1']:.4f} (drop {a['int8_drop_points']:.2f} points)",
            ),
            *[
                (name, f"{_ms(row.get('measured_ms'))} measured, {_ms(row.get('predicted_ms'))} predicted")
                for name, row in card["latency"]["files"].items()
            ],
            *[(name, f"{f['bytes']} bytes, sha256 {f['sha256'][:16]}") for name, f in files.items()],
        ]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"<p>{html.escape(str(folder))}/card.json cannot be read ({html.escape(type(exc).__name__)})</p>"
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    names = ("card.md", "card.json", "model-float32.tflite", "model-int8.tflite", "model.onnx")
    links = " ".join(f"<a href='{href}/{n}'>{n}</a>" for n in names)
    return f"<p>model card and files: {links}</p><table>{cells}</table>"
