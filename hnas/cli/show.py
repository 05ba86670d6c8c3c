"""Tables the commands print: a search's stages and best architectures, a verification, a LUT validation, a LUT
comparison."""

from __future__ import annotations

from rich.table import Table

from hnas.cli.common import console, fmt_size
from hnas.core.band import Band
from hnas.searchrun import latencies_text


def print_results(results: dict) -> None:
    """Per-stage table and the best architectures of a search."""
    t = Table(title="HNAS stages")
    cols = ("stage", "space size", "supernet val acc", "evaluated / budget", "best one-shot acc", "latency ms")
    for col in (*cols, "best architecture"):
        t.add_column(col)
    for s in results["stages"]:
        size = s.get("space_size") or s.get("searched_size")
        acc = s.get("supernet_val_acc")
        t.add_row(
            str(s["stage"]),
            fmt_size(int(size)) if size else "-",
            "-" if acc is None else f"{acc:.3f}",
            f"{s['evaluated']} / {s['budget']}" if s.get("budget") else str(s.get("evaluated", "-")),
            "-" if s.get("best_accuracy") is None else f"{s['best_accuracy']:.3f}",
            "-" if s.get("best_latency_ms") is None else f"{s['best_latency_ms']:.2f}",
            s.get("best_arch") or "-",
        )
    console.print(t)
    for s in results["stages"]:
        if s.get("exhausted"):
            console.print(f"stage {s['stage']}: {s['evaluated']} of {s['budget']} evaluations: {s['exhausted']}")
    band = Band(*results["latency_band_ms"])
    console.print(f"latency band {band} ms on {results['lut']}")
    tables = results.get("tables", [])  # a fleet: every row's latency on every table, the objective's first
    for t in tables[1:]:
        console.print(f"and latency band {Band(*t['band_ms'])} ms on {t['lut']} ({t['precision']})")
    if tables:
        console.print("latency ms: " + " / ".join(f"{t['name']} ({t['precision']})" for t in tables))
    for title, rows in (
        (f"the {len(results['best'])} most accurate architectures inside the band", results["best"]),
        (f"the final Pareto set ({len(results['pareto'])} architectures, by latency)", results["pareto"]),
    ):
        console.print(f"{title}:")
        for r in rows:
            ms = latencies_text(r)
            console.print(f"  {r['accuracy']:.3f}  {ms} ms  {r['macs'] / 1e6:.0f} MMACs  {r['arch']}")


def print_fleet_verify(rows: list[dict]) -> None:
    """A fleet's verification: one row per table (measured on its device, the stability rule's verdict), then the
    devices that could not be reached and why."""
    t = Table(title="every latency table of the run: the same network on each device")
    for col, just in (
        ("table", "left"),
        ("precision", "left"),
        ("device", "left"),
        ("predicted ms", "right"),
        ("measured ms", "right"),
        ("error", "right"),
    ):
        t.add_column(col, justify=just)
    for r in rows:
        if not r["reached"]:
            t.add_row(r["name"], "-", "not reached", "-", "-", "-")
            continue
        dev = r["device"]
        spread = "1 repeat" if r["spread"] is None else f"repeats spread {r['spread'] * 100:.0f} %"
        err = f"{r['error'] * 100:+.2f} %" if r["error"] is not None else f"not reported: unstable ({spread})"
        where = f"{dev.get('model')} core {dev.get('core')}"
        t.add_row(r["name"], r["precision"], where, f"{r['predicted_ms']:.3f}", f"{r['measured_ms']:.3f}", err)
    console.print(t)
    for r in rows:
        if not r["reached"]:
            console.print(f"could not reach the device of {r['name']}: {r['why']}")


def print_verify(result: dict) -> None:
    """Predicted against measured, and the per-layer table when there is one."""
    title = f"{result['arch']} on {result['device'].get('model')} core {result['device'].get('core')}"
    t = Table(title=f"{title}, {result.get('precision', 'float32')}")
    t.add_column("quantity")
    t.add_column("ms", justify="right")
    t.add_row(
        "predicted (LUT sum" + (", calibrated)" if result["calibrated"] else ")"), f"{result['predicted_ms']:.3f}"
    )
    if result["calibrated"]:
        t.add_row("predicted (raw LUT sum)", f"{result['predicted_raw_ms']:.3f}")
    t.add_row("measured end to end (median of repeat medians)", f"{result['measured_ms']:.3f}")
    if result["error"] is not None:
        t.add_row("error", f"{result['error'] * 100:+.2f} %")
    else:
        t.add_row("error", "not reported: the measurement is unstable")
    console.print(t)
    if not result["stable"]:
        from latency.stability import why_unstable

        medians = ", ".join(f"{m:.2f}" for m in result["repeat_medians_ms"])
        console.print(
            f"unstable ({medians} ms): {why_unstable(result['repeat_medians_ms'], result['spread'])}; no error is "
            "reported. Rerun on a quiet machine."
        )
    if result.get("tables"):
        print_fleet_verify(result["tables"])
    if result.get("doubtful_note"):
        console.print(result["doubtful_note"])
    if result.get("host_busy"):
        console.print(f"the host was busy while measuring: {result['host_busy']}")
    if result.get("op_profile"):
        p = Table(
            title="per layer: op profile of the whole network against the LUT entry",
            caption=f"op profile: {result['op_profile_method']}",
        )
        for col, just in (("layer", "left"), ("TFLite ops", "left"), ("in network ms", "right"), ("LUT ms", "right")):
            p.add_column(col, justify=just)
        p.add_column("network - LUT", justify="right")
        for r in result["op_profile"]:
            d = r["ms"] - r["lut_ms"]
            p.add_row(r["layer"], " ".join(r["ops"]) or "-", f"{r['ms']:.3f}", f"{r['lut_ms']:.3f}", f"{d:+.3f}")
        lut_total = sum(r["lut_ms"] for r in result["op_profile"])
        tot = result["op_profile_total_ms"]
        p.add_section()
        p.add_row("sum", "", f"{tot:.3f}", f"{lut_total:.3f}", f"{tot - lut_total:+.3f}")
        p.add_row("measured end to end", "", f"{result['measured_ms']:.3f}", "", "")
        console.print(p)
    if result.get("int8_accuracy"):
        print_int8_accuracy(result["int8_accuracy"])


def print_int8_accuracy(acc: dict) -> None:
    """Top-1 of the int8 deployment against the float network's (the post-training quantization drop)."""
    split = f"{acc['split']} split ({acc['images']} images)"
    t = Table(
        title="int8 deployment accuracy (top-1)",
        caption=f"{acc['supernet']} supernet weights at {acc['resolution']} px, width {acc['width']:g}; "
        f"int8 calibrated on {acc['calibration']['source']}",
    )
    t.add_column("network")
    t.add_column("top-1", justify="right")
    t.add_row("torch, val split (the search's one-shot top-1)", f"{acc['torch_val_top1']:.4f}")
    t.add_row(f"torch, {split}", f"{acc['torch_top1']:.4f}")
    t.add_row(f"TFLite float32, {split}", f"{acc['float32_top1']:.4f}")
    t.add_row(f"TFLite int8, {split}", f"{acc['int8_top1']:.4f}")
    t.add_row("drop float32 -> int8", f"{acc['drop'] * 100:+.2f} points")
    t.add_row("same prediction, float32 and int8", f"{acc['agreement'] * 100:.1f} %")
    console.print(t)


def print_validation(report: dict) -> None:
    """Held-out errors of a LUT validation, raw and calibrated."""
    n, fit = report["n"], report["fit"]
    t = Table(title=f"{n - fit} held-out networks ({fit} fitted the calibration)")
    for col in ("prediction", "MAPE", "within 5 %", "within 10 %", "max error", "Kendall tau"):
        t.add_column(col, justify="right")
    for name, st in (("raw LUT sum", report["held_out_raw"]), ("calibrated", report["held_out_calibrated"])):
        t.add_row(
            name,
            f"{st['mape'] * 100:.2f} %",
            f"{st['within_5'] * 100:.0f} %",
            f"{st['within_10'] * 100:.0f} %",
            f"{st['max_abs_error'] * 100:.1f} %",
            f"{st['kendall_tau']:.3f}",
        )
    console.print(t)
    if report["unstable"]:
        console.print(
            f"{report['unstable']} of {n} networks stayed unstable and were left out of the fit and the errors"
        )
    cal, folder = report["calibration"], report["folder"]
    stored = f"stored in {report['lut']}" if report["calibration_applied"] else "not stored"
    console.print(
        f"calibration: measured = {cal['offset_ms']:.3f} ms + {cal['scale']:.4f} x LUT sum ({stored}): "
        f"{report['calibration_note']}; report {folder}/validate.json, plot {folder}/validate.png"
    )
    if report.get("doubtful_note"):
        console.print(report["doubtful_note"])


def print_diff(result: dict, a: str, b: str) -> None:
    """Per-entry ratios B / A, the ratio per op (lowest median first), and a summary line."""
    s = result["summary"]
    pa, pb = s["a_precision"], s["b_precision"]
    what = f"{pb} / {pa}" if pa != pb else "B/A"
    t = Table(title=f"{what}: {b} over {a}")
    for col in ("part", "A ms", "B ms", what):
        t.add_column(col, justify="left" if col == "part" else "right")
    for r in result["rows"]:
        t.add_row(r["key"], f"{r['a_ms']:.4f}", f"{r['b_ms']:.4f}", f"{r['ratio']:.3f}")
    console.print(t)
    by_op = result["by_op"]
    if by_op:
        o = Table(title=f"{what} per op, across stage shapes (lowest median first)")
        for col in ("op", "entries", "median", "lowest", "highest"):
            o.add_column(col, justify="left" if col == "op" else "right")
        for g in by_op:
            o.add_row(
                g["op"], str(g["entries"]), f"{g['median_ratio']:.3f}", f"{g['min_ratio']:.3f}", f"{g['max_ratio']:.3f}"
            )
        console.print(o)
    median = s["median_ratio"]
    line = (
        f"{s['common']} common entries; median ratio {median if median is None else round(median, 3)}; "
        f"{s['only_a']} only in A, {s['only_b']} only in B"
    )
    if len(by_op) > 1:
        lo, hi = by_op[0], by_op[-1]
        if pa != pb:
            line += f"; {pb} gains most over {pa} on {lo['op']} (median {what} {lo['median_ratio']:.3f})"
            line += f", least on {hi['op']} ({hi['median_ratio']:.3f})"
        else:
            line += f"; lowest median ratio {lo['op']} ({lo['median_ratio']:.3f})"
            line += f", highest {hi['op']} ({hi['median_ratio']:.3f})"
    console.print(line)
