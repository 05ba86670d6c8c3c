"""One-shot evaluation images decoded once: the same accuracies as streaming them (and as before), shared by
every evaluator of a run, at the evaluation batch size, with one line when they do not fit."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from hnas.data import imagenet
from hnas.evalimages import EvalFormat, EvalImages
from hnas.evaluate import OneShotEvaluator, _Path, calibration_batches, recalibrate_bn, top1
from hnas.runs import SupernetRun
from hnas.settings import ProxySettings, RunConfig, TrainConfig
from hnas.spec.arch import sample
from hnas.supernet import Supernet
from tests.harness import make_imagenet_folder
from tests.tiny import tiny_space


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))


def _streaming_as_before(net, arch, train_set, val_set, bn_images, batch) -> float:
    """What OneShotEvaluator computed before images were cached: calibration list, val DataLoader per arch."""
    path = _Path(net, arch)
    recalibrate_bn(path, calibration_batches(train_set, bn_images, batch), torch.device("cpu"), net.path_modules(arch))
    return top1(path, DataLoader(val_set, batch_size=batch, shuffle=False), torch.device("cpu"))


def test_cached_streamed_and_previous_accuracies_are_identical():
    torch.manual_seed(0)
    net = Supernet(tiny_space())
    with torch.no_grad():  # BN statistics that matter: perturb the affine weights
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    train_set, val_set = _data(96, 1), _data(70, 2)
    archs = sample(net.space, 6, np.random.default_rng(0))
    lines = []
    cached = OneShotEvaluator(net, val_set, train_set, bn_images=40, batch_size=16)
    streamed = EvalImages(train_set, val_set, 40, 16, EvalFormat(torch.device("cpu")), budget_bytes=0, log=lines.append)
    assert cached.images.cached and cached.images.placement == {"calibration": "cpu", "validation": "cpu"}
    assert not streamed.cached and len(lines) == 1 and "40 calibration and 70 validation images" in lines[0]
    a = cached(archs)
    b = OneShotEvaluator(net, val_set, train_set, bn_images=40, batch_size=16, images=streamed)(archs)
    before = [_streaming_as_before(net, x, train_set, val_set, 40, 16) for x in archs]
    assert a.tolist() == b.tolist() == before
    assert len(set(a.tolist())) > 1  # the architectures differ, so equality is not vacuous


def test_imagenet_folder_cached_equals_streamed_with_workers(tmp_path):
    data = imagenet(make_imagenet_folder(tmp_path, train=8, val=2), resolution=16, val_per_class=2)
    cpu = EvalFormat(torch.device("cpu"))
    cached = EvalImages(data.train, data.val, 12, 5, cpu)
    data.train.set_epoch(7)  # the training loop moves on: calibration keeps its own fixed augmentation
    streamed = EvalImages(data.train, data.val, 12, 5, cpu, workers=2, budget_bytes=0, log=lambda _: None)
    calib = list(zip(cached.calibration(), streamed.calibration(), strict=True))
    assert [len(x) for x, _ in calib] == [5, 5, 2] and all(torch.equal(x, y) for x, y in calib)
    val = list(zip(cached.validation(), streamed.validation(), strict=True))
    assert sum(len(y) for (_, y), _ in val) == len(data.val) == 3
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in val)
    torch.manual_seed(0)
    net = Supernet(tiny_space().with_skeleton(resolution=16, num_classes=3))
    archs = sample(net.space, 3, np.random.default_rng(1))
    a = OneShotEvaluator(net, data.val, data.train, images=cached)(archs)
    b = OneShotEvaluator(net, data.val, data.train, images=streamed)(archs)
    assert a.tolist() == b.tolist()


def test_a_run_decodes_once_for_all_its_evaluators_at_the_eval_batch(tmp_path, monkeypatch):
    cfg = RunConfig(
        space=tiny_space().to_dict(),
        data="digits",
        proxy=ProxySettings(resolution=16, width=0.5, bn_images=50, eval_batch=48, val_archs=2),
        train=TrainConfig(epochs=2, lr=0.05, batch_size=32, seed=0),
    )
    run = SupernetRun.open(tmp_path / "run", cfg)
    made = []
    original = EvalImages.__init__

    def counting(self, *a, **k):
        made.append(1)
        original(self, *a, **k)

    monkeypatch.setattr(EvalImages, "__init__", counting)
    history = run.train(progress=False)
    net, _ = run.latest()
    first, second = run.evaluator(net, "a"), run.evaluator(net, "b")
    assert len(made) == 1 and first.images is second.images
    assert all(h.val_acc is not None for h in history)  # the per-epoch check used the same images
    sizes = [len(x) for x, _ in first.val_loader]
    assert sizes[0] == 48 and sum(sizes) == len(run.data().val)
    assert [len(x) for x in first.calib] == [48, 2]
