"""A search run's result checked on the device: its latency end to end and, for an int8 deployment, what the
post-training quantization costs in accuracy.

Latency (`latency.verify.verify_arch`) is measured at the deployment resolution with canonical weights, at the
LUT's precision. The accuracy of an int8 deployment needs trained weights, which only the run has: the best
architecture's subnet is extracted from the run's final supernet (`Supernet.extract`), its BatchNorm statistics
are recomputed exactly as one-shot evaluation recomputes them (the same training images), and it is exported with
those weights at the proxy resolution and width the supernet was trained at; one onnx2tf conversion gives the
float32 and the int8 model, the int8 one calibrated on real training images. Both run on the run's test split.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hnas.core.errors import HnasError
from hnas.core.precision import INT8
from hnas.searchrun import SearchRun
from hnas.spec.arch import Architecture


@dataclass(frozen=True)
class QuantCheck:
    """How the int8 deployment's accuracy is measured: real training images that calibrate the int8 ranges (drawn
    with `seed`, as one-shot evaluation draws its BatchNorm images) and the evaluation batch size."""

    calibration_images: int = 256
    seed: int = 0
    batch: int = 64


def weights_digest(module) -> str:
    """sha256 of a module's parameters and buffers (a trained export's cache label)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def image_calibration(train_set, data_name: str, check: QuantCheck):
    """Real training images that calibrate an int8 model (`check`: how many, drawn with which seed)."""
    import torch

    from hnas.evaluate import calibration_batches
    from latency.quantize import ImageCalibration

    calib = torch.cat(calibration_batches(train_set, check.calibration_images, check.batch, seed=check.seed))
    source = f"{data_name} train, {len(calib)} images, seed {check.seed}"
    return ImageCalibration(calib.permute(0, 2, 3, 1).numpy(), source)


def top1_of_files(net, dataset, models: dict[str, str | Path], batch: int = 64) -> dict:
    """Top-1 of the torch network and of each TFLite model (run by the TFLite interpreter) on `dataset`, and how
    often each pair of TFLite models agree: {"images", "top1": {name: acc}, "agreement": {"a/b": rate}}."""
    import torch
    from torch.utils.data import DataLoader

    from latency.quantize import TfliteModel

    runners = {name: TfliteModel(path) for name, path in models.items()}
    preds: dict[str, list[np.ndarray]] = {"torch": [], **{n: [] for n in runners}}
    labels = []
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch, shuffle=False):
            nhwc = x.permute(0, 2, 3, 1).numpy()
            preds["torch"].append(net(x).numpy().argmax(1))
            for name, run in runners.items():
                preds[name].append(run(nhwc).argmax(1))
            labels.append(y.numpy())
    if not labels:
        raise HnasError("the test split is empty: nothing to measure the models' accuracy on")
    y = np.concatenate(labels)
    p = {k: np.concatenate(v) for k, v in preds.items()}
    names = list(runners)
    return {
        "images": len(y),
        "top1": {k: float(np.mean(v == y)) for k, v in p.items()},
        "agreement": {f"{a}/{b}": float(np.mean(p[a] == p[b])) for i, a in enumerate(names) for b in names[i + 1 :]},
    }


def run_subnet(run: SearchRun, arch: Architecture):
    """`arch`'s subnet of the run's final supernet, its BatchNorm statistics recomputed exactly as one-shot
    evaluation recomputes them (the same images, batches and order), in eval mode on the CPU; with the run's
    config, search settings, data and the supernet's (proxy) space: (net, config, search, data, space)."""
    import torch

    from hnas.evaluate import calibration_batches, recalibrate_bn

    config, search = run.config, run.search
    supernet = run.final_supernet().cpu()
    net = supernet.extract(arch).cpu()
    data, proxy = run.supernets.data(), config.proxy
    # exactly one-shot evaluation's BatchNorm statistics: the same images, batches and order
    recalibrate_bn(net, calibration_batches(data.train, proxy.bn_images, proxy.eval_batch), torch.device("cpu"))
    return net.eval(), config, search, data, supernet.space


def int8_accuracy(run: SearchRun, arch: Architecture, exporter=None, check: QuantCheck | None = None) -> dict:
    """Top-1 on the run's test split of `arch`'s network with the run's trained weights: torch, float32 TFLite and
    int8 TFLite, the drop from float32 to int8 and how often the two agree; and the torch network's top-1 on the
    validation split, which is the one-shot accuracy the search measured (the same weights and statistics)."""
    import torch
    from torch.utils.data import DataLoader

    from hnas.evaluate import top1
    from latency.export import Exporter

    check = check or QuantCheck()
    net, config, search, data, space = run_subnet(run, arch)
    proxy = config.proxy
    val_top1 = top1(net, DataLoader(data.val, batch_size=proxy.eval_batch, shuffle=False), torch.device("cpu"))
    calibration = image_calibration(data.train, config.data, check)
    sk = space.skeleton
    shape = (sk.in_channels, sk.resolution, sk.resolution)
    f32, i8 = (exporter or Exporter()).export_pair(net, shape, f"weights:{weights_digest(net)}", calibration)
    res = top1_of_files(net, data.test, {"float32": f32.path, "int8": i8.path}, check.batch)
    acc, seen = res["top1"], res["images"]
    return {
        "arch": str(arch),
        "split": "test",
        "images": seen,
        "resolution": sk.resolution,
        "width": proxy.width,
        "supernet": f"stage {search.stages - 1}",
        "bn_images": proxy.bn_images,
        "torch_val_top1": val_top1,
        "torch_top1": acc["torch"],
        "float32_top1": acc["float32"],
        "int8_top1": acc["int8"],
        "drop": acc["float32"] - acc["int8"],
        "agreement": res["agreement"]["float32/int8"],
        "calibration": calibration.identity(),
        "check": asdict(check),
        "float32_sha256": f32.sha256,
        "int8_sha256": i8.sha256,
    }


def verify_run(
    run: str | Path,
    lut: str | None = None,
    device: str = "local",
    op_profile: bool = False,
    benchmark_binary: str | None = None,
    precision: str | None = None,
    progress=None,
    exporter=None,
    stability=None,
) -> dict:
    """Verify the best architecture of a search run on its LUT (or `lut`) and write RUN/verify.json; an int8
    verification also reports the int8 network's top-1 against the float network's (`int8_accuracy`). A fleet run
    verified on its own tables is measured on each table's device that can be reached (`verify_fleet`)."""
    from hnas.core.io import atomic_write_json
    from hnas.workflows.search import finished_run
    from latency.verify import verify_arch

    folder = finished_run(run)  # config.json, read once for every step below
    arch = folder.best_architecture()
    if lut is None and folder.search.fleet:
        if device != "local" or precision is not None:
            raise HnasError(
                f"{run} searched on {len(folder.search.fleet) + 1} tables and is measured on each table's own device "
                "at its precision: drop --device and --precision, or pass --lut TABLE to verify on one table"
            )
        result = verify_fleet(folder, arch, op_profile, benchmark_binary, progress, exporter, stability)
    else:
        if lut is None:  # the run's own table, checked against the sha256 it recorded (another table: pass it)
            from hnas.runs import run_lut

            lut = run_lut(folder.config, run).lut
        result = verify_arch(
            arch,
            lut,
            device,
            op_profile,
            benchmark_binary,
            progress,
            exporter,
            stability=stability,
            precision=precision,
        )
    if result["precision"] == INT8:
        result["int8_accuracy"] = int8_accuracy(folder, arch, exporter)
    atomic_write_json(Path(run) / "verify.json", result)
    return result


def verify_fleet(
    folder: SearchRun,
    arch: Architecture,
    op_profile: bool = False,
    benchmark_binary: str | None = None,
    progress=None,
    exporter=None,
    stability=None,
) -> dict:
    """`arch` measured on the device of each of a fleet run's tables (checked by sha256) that can be reached: the
    first reached table's full result, with `tables` holding one row per table (predicted, measured, the stability
    rule's verdict, error) or, for a device that could not be reached (not attached, another machine's host, a
    published table), why. None reached is one line naming each table and why."""
    from hnas.runs import locate_table, run_lut
    from hnas.settings import table_names
    from latency.verify import verify_arch

    def where(table) -> str | HnasError:
        """An other table's file now, or why it cannot be used (missing, or not the table the run recorded)."""
        try:
            return locate_table(table, folder.path).lut
        except HnasError as exc:
            return exc

    luts = [run_lut(folder.config, folder.path).lut, *(where(t) for t in folder.search.fleet)]
    recorded_luts = folder.search.luts(folder.config.lut)
    names = table_names(recorded_luts)  # as the run's results name them
    first, rows = None, []
    for name, path, recorded in zip(names, luts, recorded_luts, strict=True):
        try:
            if isinstance(path, HnasError):
                raise path
            profile = op_profile and first is None  # the op profile of the first device reached
            r = verify_arch(arch, path, None, profile, benchmark_binary, progress, exporter, stability)
        except HnasError as exc:
            lut = recorded if isinstance(path, HnasError) else path
            rows.append({"name": name, "lut": lut, "reached": False, "why": str(exc)})
            continue
        if first is None:
            first = r
        keep = ("precision", "device", "predicted_ms", "measured_ms", "repeat_medians_ms", "stable", "spread", "error")
        rows.append({"name": name, "lut": path, "reached": True, **{k: r[k] for k in keep}})
    if first is None:
        raise HnasError(
            "no device of this run's latency tables could be reached: "
            + "; ".join(f"{r['name']}: {r['why']}" for r in rows)
        )
    return {**first, "tables": rows}
