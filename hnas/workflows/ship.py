"""Ship a trained architecture: the deployable TFLite files, checked for accuracy and latency, with a model card.

    OUT/model-float32.tflite   the trained network, float32 (NHWC input)
    OUT/model-int8.tflite      full-integer post-training quantization, calibrated on real training images
    OUT/model.onnx             the ONNX file both conversions passed through
    OUT/card.json, card.md     what the files are, how accurate and how fast they are, and how they were made
    OUT/space.json             the search space, when it is not a preset (the card's commands name it)

The network comes from a finished `hnas train` folder (its checkpoint) or from a search run (its best
architecture's subnet with BatchNorm recomputed exactly as one-shot evaluation does, `run_subnet`). It is exported
by `latency.export.Exporter` - the onnx2tf path every LUT entry takes, one conversion for both files - and measured
by `latency.verify.measure_file` with a LUT's benchmark settings and the stability rule. Every input is checked
before anything is written; the files are written into a temporary folder beside OUT, renamed to OUT at the end.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hnas.core.errors import HnasError
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace

FILES = ("model-float32.tflite", "model-int8.tflite", "model.onnx", "card.json", "card.md", "space.json")
MODELS = ("model-float32.tflite", "model-int8.tflite")


@dataclass
class Trained:
    """A trained network ready to export: the torch module (eval mode, CPU) at the resolution and width it was
    trained at, its architecture in the search space, the data it learnt from and where it came from."""

    net: object = field(repr=False)
    arch: Architecture
    space: SearchSpace  # the network's own space: the search space at the trained resolution, width and classes
    data: object = field(repr=False)  # DataBundle
    data_spec: str
    source: dict  # kind ("train" or "search"), folder, recipe, the results the folder holds
    commands: list[str]


def is_preset(space: SearchSpace) -> bool:
    """`space` is the preset of its name (a command can name it; any other space needs its file)."""
    from hnas.spec.space import PRESETS

    return space.name in PRESETS and PRESETS[space.name]().to_dict() == space.to_dict()


def _train_command(ident: dict, space: SearchSpace, folder: Path) -> str:
    """The `hnas train` command that trains what `ident` (a stand-alone training's identity) describes (a space
    that is not a preset is named as the space.json the export writes)."""
    t = ident["train"]
    args = ["hnas", "train", ident["arch"], "--space", space.name if is_preset(space) else "space.json", "--data"]
    args += [ident["data"], "--epochs", str(t["epochs"]), "--lr", str(t["lr"]), "--batch-size", str(t["batch_size"])]
    args += ["--label-smoothing", str(t["label_smoothing"]), "--resolution", str(ident["resolution"])]
    args += ["--width", str(ident["width"])]
    if ident.get("per_class") is not None:
        args += ["--per-class", str(ident["per_class"])]
    return shlex.join([*args, "--seed", str(t["seed"]), "--out", str(folder)])


def open_training(folder: Path) -> Trained:
    """The trained network of a finished `hnas train` folder (arch.json, checkpoint.pt, result.json)."""
    from hnas.core.io import read_json
    from hnas.data import check_data, load_data
    from hnas.spec.arch import parse_arch
    from hnas.spec.network import Network
    from hnas.supernet import proxy_space
    from hnas.train import load_checkpoint, load_weights

    meta = read_json(folder / "arch.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("identity"), dict) or "space_def" not in meta:
        raise HnasError(f"{folder / 'arch.json'} is not the record of an `hnas train` run: train again with --out")
    ident = meta["identity"]
    done, ck = folder / "result.json", folder / "checkpoint.pt"
    if not done.is_file() or not ck.is_file():
        raise HnasError(
            f"{folder} is an unfinished training (no {'result.json' if ck.is_file() else 'checkpoint.pt'}): "
            "rerun its `hnas train` command with the same --out to finish it, then export"
        )
    result = read_json(done)
    try:
        space = SearchSpace.from_dict(meta["space_def"], f"{folder / 'arch.json'}")
        arch = parse_arch(ident["arch"], space)
        data_spec, res, width = ident["data"], int(ident["resolution"]), float(ident["width"])
        seed, per_class = int(ident["train"]["seed"]), ident.get("per_class")
        epochs = int(ident["train"]["epochs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HnasError(f"{folder / 'arch.json'} lacks {exc} of the training's identity: train again") from None
    if not isinstance(result, dict) or result.get("arch") != str(arch) or result.get("epochs") != epochs:
        raise HnasError(f"{done} is not the result of the training in {folder / 'arch.json'}: train again")
    check_data(data_spec)
    data = load_data(data_spec, res, seed, per_class)
    pspace = proxy_space(space, res, width, data.num_classes)
    net = Network(Architecture(pspace, arch.ops))
    load_weights(net, load_checkpoint(ck)["model"], ck)
    net.eval()
    source = {
        "kind": "train",
        "folder": str(folder),
        "identity": ident,
        "result": result,
        "recipe": {"resolution": res, "width": width, "per_class": per_class, "train": ident["train"]},
    }
    return Trained(net, arch, pspace, data, data_spec, source, [_train_command(ident, space, folder)])


def open_search(folder: Path) -> Trained:
    """The best architecture of a finished search run: its subnet of the final supernet, BatchNorm recomputed."""
    from dataclasses import asdict as dc_asdict

    from hnas.workflows.search import finished_run
    from hnas.workflows.verify import run_subnet

    run = finished_run(folder)
    arch = run.best_architecture()
    net, config, search, data, pspace = run_subnet(run, arch)
    source = {
        "kind": "search",
        "folder": str(folder),
        "weights": f"stage {search.stages - 1} supernet's subnet, BatchNorm recomputed on {config.proxy.bn_images} "
        "training images (as one-shot evaluation)",
        "recipe": {"proxy": dc_asdict(config.proxy), "train": dc_asdict(config.train)},
    }
    return Trained(net, arch, pspace, data, config.data, source, [f"hnas search --out {shlex.quote(str(folder))}"])


def open_trained(folder: str | Path, space: str | None = None) -> Trained:
    """The trained network of `folder` (a finished `hnas train` folder or a search run), checked against `space`
    (a preset name or space file) when given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HnasError(f"{folder} does not exist: give the --out folder of a finished `hnas train` or `hnas search`")
    if (folder / "config.json").is_file():
        trained = open_search(folder)
    elif (folder / "arch.json").is_file():
        trained = open_training(folder)
    else:
        raise HnasError(
            f"{folder} is neither an `hnas train` folder (arch.json) nor a search run (config.json): give the --out "
            "folder of a finished training"
        )
    if space is not None:
        from hnas.spec.space import load_space

        want = load_space(space)
        if want.to_dict() != trained.arch.space.to_dict():
            raise HnasError(
                f"{folder} holds an architecture of space {trained.arch.space.name!r}, not of {space}: drop --space "
                "or give the folder of a training in that space"
            )
    return trained


def check_out(out: str | Path) -> Path:
    """`out` when it may receive an export: absent, empty, or holding only an earlier export's files."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise HnasError(f"--out {out} is a file: give a new folder")
        other = sorted(p.name for p in out.iterdir() if p.name not in FILES)
        if other:
            raise HnasError(
                f"--out {out} holds other files ({', '.join(other[:3])}): give a new folder, or an earlier export's"
            )
    return out


def logits_check(net, path: Path, images: np.ndarray, onnx: bool = False) -> dict:
    """Largest absolute difference between the torch network's logits and the file's (a float32 .tflite or, with
    `onnx`, the .onnx file run by ONNX's reference evaluator) on NHWC `images`."""
    import torch

    with torch.no_grad():
        want = net(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    if onnx:
        import onnx as onnx_lib
        from onnx.reference import ReferenceEvaluator

        model = onnx_lib.load(str(path))
        onnx_lib.checker.check_model(model)
        ev = ReferenceEvaluator(model)
        got = np.concatenate([ev.run(None, {"input": x[None]})[0] for x in images])
        runtime = f"onnx {onnx_lib.__version__} reference evaluator"
    else:
        from latency.quantize import TfliteModel

        got, runtime = TfliteModel(path)(images), "TFLite interpreter"
    diff = float(np.max(np.abs(got - want)))
    return {"images": len(images), "max_abs_diff": diff, "max_abs_logit": float(np.max(np.abs(want))), "by": runtime}


def tflite_summary(path: Path) -> dict:
    """A TFLite file's op counts, input and output tensors (dtype, shape, quantization) and its kernels' types."""
    from latency.export import tflite_ops
    from latency.quantize import op_tensor_types
    from latency.runtime import load_interpreter

    interp = load_interpreter(path, use_xnnpack=False)

    def tensor(d: dict) -> dict:
        scale, zero = d["quantization"]
        q = {"scale": float(scale), "zero_point": int(zero)} if scale else None
        return {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]], "quantization": q}

    kernels = sorted({ins[0] for op, ins, _ in op_tensor_types(path) if ins and op not in ("QUANTIZE", "DEQUANTIZE")})
    return {
        "ops": dict(Counter(tflite_ops(path))),
        "op_sequence": tflite_ops(path),
        "input": tensor(interp.get_input_details()[0]),
        "output": tensor(interp.get_output_details()[0]),
        "kernel_input_types": kernels,
    }


def _lut_prediction(lut, lut_path: str, trained: Trained, precision: str, same: bool) -> dict:
    """The LUT's prediction for the network at `precision`, or why there is none."""
    from latency.precision import table_precision
    from latency.predict import LatencyPredictor

    if lut is None:
        return {"predicted_ms": None, "why_not": "no LUT given (--lut)"}
    if table_precision(lut) != precision:
        return {"predicted_ms": None, "why_not": f"{lut_path} holds {table_precision(lut)} entries"}
    try:
        pred = LatencyPredictor(lut, trained.space, lut_path)
    except HnasError:
        sk = trained.space.skeleton
        return {
            "predicted_ms": None,
            "why_not": f"{lut_path} has no entries at the trained network's shapes (resolution {sk.resolution}, "
            f"stem {sk.stem_channels} channels, {sk.num_classes} classes): it predicts the search space's network",
        }
    arch = Architecture(trained.space, trained.arch.ops)
    return {
        "predicted_ms": pred.predict_arch(arch),
        "calibrated": pred.calibration is not None,
        "lut": lut_path,
        "lut_device": lut.device,
        "same_device": same,
    }


def export_trained(
    trained: Trained,
    out: str | Path,
    device=None,
    lut_path: str | None = None,
    io: str = "int8",
    exporter=None,
    stability=None,
    calibration_images: int = 256,
    seed: int = 0,
    command: list[str] | None = None,
    log=print,
) -> dict:
    """Export `trained` into `out` (checked by `check_out`): both TFLite files, the ONNX file and the card; the
    accuracy of each file on the test split; the latency of each file on `device` (an open `Device`; None: not
    measured) with the settings of the LUT at `lut_path` (default settings without one). Returns the card."""
    from hnas.core.io import atomic_write_json, atomic_write_text, sha256_file
    from hnas.spec.cost import arch_cost
    from hnas.spec.network import count_module
    from hnas.workflows.verify import QuantCheck, image_calibration, top1_of_files, weights_digest
    from latency.build import same_device
    from latency.export import Exporter, tool_versions
    from latency.lut import Lut
    from latency.quantize import check_io
    from latency.verify import measure_file

    out = check_out(out)
    check_io(io)
    lut = Lut.load(lut_path) if lut_path is not None else None
    net, sk = trained.net, trained.space.skeleton
    shape = (sk.in_channels, sk.resolution, sk.resolution)
    calibration = image_calibration(trained.data.train, trained.data_spec, QuantCheck(calibration_images, seed))
    source = calibration.source
    log(f"exporting {trained.arch} at {sk.resolution}x{sk.resolution} (onnx2tf, int8 calibrated on {source})")
    f32, i8 = (exporter or Exporter()).export_pair(
        net, shape, f"weights:{weights_digest(net)}", calibration, io=io, keep_onnx=True
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        shutil.copyfile(f32.path, tmp / "model-float32.tflite")
        shutil.copyfile(i8.path, tmp / "model-int8.tflite")
        shutil.copyfile(i8.onnx, tmp / "model.onnx")
        probe = calibration.images[:4].copy()
        checks = {
            "model-float32.tflite": logits_check(net, tmp / "model-float32.tflite", probe),
            "model.onnx": logits_check(net, tmp / "model.onnx", probe, onnx=True),
        }
        log(f"top-1 on the {trained.data_spec} test split: torch and both .tflite files (TFLite interpreter)")
        acc = top1_of_files(net, trained.data.test, {m: tmp / m for m in MODELS})
        top = acc["top1"]
        drop = top["model-float32.tflite"] - top["model-int8.tflite"]
        summaries = {m: tflite_summary(tmp / m) for m in MODELS}
        files = {
            name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in ("model-float32.tflite", "model-int8.tflite", "model.onnx")
        }
        latency = {}
        desc = device.describe() if device is not None else None
        same = bool(lut is not None and desc is not None and same_device(lut.device, desc))
        for name, precision in zip(MODELS, ("float32", "int8"), strict=True):
            row = _lut_prediction(lut, lut_path, trained, precision, same)
            if device is not None:
                log(f"measuring {name} on {device.name}")
                m = measure_file(device, tmp / name, lut, stability)
                row.update({k: m[k] for k in ("measured_ms", "repeat_medians_ms", "stable", "spread", "host_busy")})
                row.update({"settings": m["settings"], "repeats": m["repeats"]})
                if row.get("predicted_ms") is not None and same and m["stable"]:
                    row["error"] = (row["predicted_ms"] - m["measured_ms"]) / m["measured_ms"]
                if name == "model-int8.tflite" and io == "float":
                    row["note"] = "float input and output: one QUANTIZE and one DEQUANTIZE more than the LUT measures"
            latency[name] = row
        cost, counted = arch_cost(Architecture(trained.space, trained.arch.ops)), count_module(net, shape)
        i8_in = summaries["model-int8.tflite"]["input"]
        card = {
            "arch": str(trained.arch),
            "space": trained.arch.space.name,
            "space_def": trained.arch.space.to_dict(),
            "source": trained.source,
            "data": {
                "spec": trained.data_spec,
                "classes": trained.data.num_classes,
                "train_images": len(trained.data.train),
                "test_images": acc["images"],
            },
            "input": {
                "layout": "NHWC",
                "shape": [1, sk.resolution, sk.resolution, sk.in_channels],
                "preprocess": "RGB scaled to [0, 1] (grey repeated to 3 channels), resized bilinear to "
                f"{sk.resolution}x{sk.resolution}, then (x - mean) / std per channel",
                "mean": list(_mean_std()[0]),
                "std": list(_mean_std()[1]),
                "int8": {"io": io, **(i8_in["quantization"] or {}), "dtype": i8_in["dtype"]},
            },
            "macs": cost.macs,
            "params": counted.params,
            "macs_counted": counted.macs,
            "files": {**files, **{m: {**files[m], **summaries[m]} for m in MODELS}},
            "checks": checks,
            "accuracy": {
                "split": "test",
                "images": acc["images"],
                "torch_top1": top["torch"],
                "float32_top1": top["model-float32.tflite"],
                "int8_top1": top["model-int8.tflite"],
                "int8_drop_points": 100 * drop,
                "float32_int8_agreement": acc["agreement"]["model-float32.tflite/model-int8.tflite"],
            },
            "calibration": {**calibration.identity(), "io": io},
            "latency": {"device": desc, "files": latency},
            "tools": tool_versions(),
            "commands": [*trained.commands, shlex.join(command or ["hnas", "export", *sys.argv[2:]])],
        }
        if not is_preset(trained.arch.space):
            trained.arch.space.save(tmp / "space.json")
        atomic_write_json(tmp / "card.json", card)
        atomic_write_text(tmp / "card.md", card_markdown(card))
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def _mean_std():
    from hnas.data import MEAN, STD

    return MEAN, STD


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder `tmp` to `out`; an earlier export there is replaced, never mixed with this one."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    os.chmod(out, 0o777 & ~_umask())
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _ms(row: dict, key: str) -> str:
    v = row.get(key)
    return "-" if v is None else f"{v:.3f} ms"


def card_markdown(card: dict) -> str:
    """The model card as Markdown (everything in card.json a reader needs, in words)."""
    a, inp = card["accuracy"], card["input"]
    q = inp["int8"]
    qparams = (
        f" (scale {q['scale']:.6g}, zero point {q['zero_point']}: q = x / scale + zero point)" if "scale" in q else ""
    )
    lines = [
        f"# Model card: {card['arch']}",
        "",
        f"Space `{card['space']}`, trained on `{card['data']['spec']}` ({card['data']['classes']} classes, "
        f"{card['data']['train_images']} training images) from `{card['source']['folder']}` "
        f"({card['source']['kind']}).",
        "",
        f"- MACs: {card['macs'] / 1e6:.2f} M; parameters: {card['params'] / 1e3:.1f} k",
        f"- Input: {inp['layout']} {inp['shape']}; {inp['preprocess']}; mean {inp['mean']}, std {inp['std']}",
        (
            f"- model-int8.tflite takes {q['dtype']} input"
            + qparams
            + f" and gives {card['files']['model-int8.tflite']['output']['dtype']} logits"
        ),
        "",
        "## Files",
        "",
        "| file | bytes | sha256 | ops |",
        "|---|---:|---|---|",
    ]
    for name, f in card["files"].items():
        ops = ", ".join(f"{k} x{v}" for k, v in f.get("ops", {}).items()) or "-"
        lines.append(f"| {name} | {f['bytes']} | `{f['sha256']}` | {ops} |")
    lines += ["", "## Accuracy", "", f"Top-1 on the test split ({a['images']} images):", ""]
    lines += [
        f"- PyTorch: {100 * a['torch_top1']:.2f} %",
        f"- model-float32.tflite (TFLite interpreter): {100 * a['float32_top1']:.2f} %",
        f"- model-int8.tflite (TFLite interpreter): {100 * a['int8_top1']:.2f} % "
        f"(drop {a['int8_drop_points']:.2f} points; float32/int8 agreement {100 * a['float32_int8_agreement']:.2f} %)",
    ]
    for name, c in card["checks"].items():
        diff = f"max |diff| {c['max_abs_diff']:.2e} on {c['images']} images"
        lines.append(f"- {name} logits vs PyTorch ({c['by']}): {diff}")
    dev = card["latency"]["device"]
    where = f"{dev.get('model') or dev.get('cpu')} core {dev.get('core')}" if dev else "not measured"
    lines += ["", "## Latency", "", f"Measured on {where}.", ""]
    lines += ["| file | predicted (LUT) | measured | stable | note |", "|---|---:|---:|---|---|"]
    for name, row in card["latency"]["files"].items():
        note = row.get("why_not") or row.get("note") or ""
        if row.get("host_busy"):
            note += f" host busy: {row['host_busy']}"
        stable = "-" if "stable" not in row else ("yes" if row["stable"] else f"no (spread {row['spread']})")
        lines.append(f"| {name} | {_ms(row, 'predicted_ms')} | {_ms(row, 'measured_ms')} | {stable} | {note} |")
    lines += ["", "## Commands", "", "```"] + card["commands"] + ["```", ""]
    return "\n".join(lines)


def card_summary(card: dict) -> list[str]:
    """A few lines for the terminal."""
    a = card["accuracy"]
    lines = [
        f"top-1 on test ({a['images']} images): torch {a['torch_top1']:.4f}, float32 {a['float32_top1']:.4f}, "
        f"int8 {a['int8_top1']:.4f} (drop {a['int8_drop_points']:.2f} points, agreement "
        f"{a['float32_int8_agreement']:.4f})"
    ]
    for name, row in card["latency"]["files"].items():
        lines.append(f"{name}: predicted {_ms(row, 'predicted_ms')}, measured {_ms(row, 'measured_ms')}")
    return lines


def verify_model(
    model: str | Path, device: str = "local", lut_path: str | None = None, benchmark_binary=None, stability=None
) -> dict:
    """`hnas verify --model`: one .tflite file measured on `device` with the settings and repeats of the LUT at
    `lut_path` (on its core when it is that LUT's device; without a LUT, the defaults a table is built with) and the
    stability rule; the file is checked before the device is reached."""
    from latency.lut import Lut
    from latency.verify import measure_file

    path = Path(model)
    if not path.is_file() or path.suffix != ".tflite":
        raise HnasError(f"--model {model} is not a .tflite file")
    if lut_path is not None and not Path(lut_path).is_file():
        raise HnasError(f"--lut {lut_path} does not exist: give a latency table, or drop --lut")
    lut = Lut.load(lut_path) if lut_path is not None else None
    dev = open_measuring_device(device, lut, benchmark_binary)
    try:
        return {**measure_file(dev, path, lut, stability), "lut": lut_path}
    finally:
        dev.close()


def open_measuring_device(device: str, lut=None, benchmark_binary: str | None = None):
    """The device to measure on, reached now (before anything is written or converted); on the LUT's core when
    the LUT was measured on a device of that kind (the host, or a phone)."""
    from latency.backends import open_device

    core = None
    if lut is not None and (lut.device.get("id") == "local") == (device == "local"):
        core = lut.device.get("core")
    try:
        dev = open_device(device, core=core, benchmark_binary=benchmark_binary)
        dev.describe()
    except HnasError as exc:
        raise HnasError(f"--device {device} cannot be reached ({exc}); `hnas devices` lists the phones") from None
    return dev
