import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from hnas.core.band import Band
from hnas.evaluate import OneShotEvaluator, calibration_batches, recalibrate_bn, top1
from hnas.settings import TrainConfig
from hnas.spec.arch import Architecture, sample
from hnas.spec.network import Network
from hnas.spec.space import basic
from hnas.supernet import Supernet, proxy_space
from hnas.train import PathSampler, train
from tests.tiny import tiny_space


def _data(n=64, res=32, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, res, res, generator=g), torch.randint(0, classes, (n,), generator=g))


def test_supernet_layers_hold_the_same_module_classes_as_networks():
    sp = proxy_space(basic(), resolution=32, width=0.25, num_classes=10)
    net = Supernet(sp)
    assert [len(layer.ops) for layer in net.layers] == [len(c) for c in sp.candidates]
    arch = sample(sp, 1, np.random.default_rng(0))[0]
    standalone = Network(arch)
    for block, layer, op in zip(standalone.blocks, net.layers, arch.ops, strict=True):
        assert type(block) is type(layer.ops[op.name])
        assert [p.shape for p in block.parameters()] == [p.shape for p in layer.ops[op.name].parameters()]


def test_proxy_keeps_candidates_and_scales_widths():
    sp = proxy_space(basic(), resolution=64, width=0.5, num_classes=10)
    assert sp.candidates == basic().candidates
    assert sp.skeleton.stem_channels == 16 and sp.skeleton.stages[-1].out_channels == 160
    assert sp.layers[0].shape.in_size == 32 and sp.skeleton.num_classes == 10


def test_extracted_subnet_matches_the_supernet_path_after_recalibration():
    torch.manual_seed(0)
    sp = tiny_space()
    net = Supernet(sp)
    for m in net.modules():  # make BN statistics non-trivial
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    data = _data()
    for arch in sample(sp, 4, np.random.default_rng(1)):
        sub = net.extract(arch).eval()
        net.eval()
        x = data.tensors[0][:8]
        with torch.no_grad():
            assert torch.allclose(sub(x), net(x, arch), atol=1e-6)
        # exact recalibration of the copy: cumulative statistics equal the plain mean over the images
        calib = calibration_batches(data, 32, 8)
        recalibrate_bn(sub, calib, torch.device("cpu"))
        stem = sub.parts[0]  # the first part runs first: the stem's conv sees the images themselves
        stem_bn = stem[1]
        with torch.no_grad():
            conv_out = torch.cat([stem[0](b) for b in calib])
        assert torch.allclose(stem_bn.running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-5)
        assert stem_bn.momentum == 0.1  # restored


def test_pruning_keeps_inherited_weights():
    torch.manual_seed(0)
    sp = tiny_space()
    net = Supernet(sp)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    keep = [c[:1] if j == 1 else c for j, c in enumerate(sp.candidates)]
    pruned = sp.with_candidates(keep, "tiny-pruned")
    net.prune(pruned)
    assert list(net.layers[1].ops) == [keep[1][0].name]
    after = net.state_dict()
    assert set(after) < set(before)
    for k, v in after.items():
        assert torch.equal(v, before[k]), k
    dropped = [k for k in before if k not in after]
    slot = next(i for i, m in enumerate(net.parts) if m is net.layers[1])  # where layer 2's choices sit
    assert dropped and all(k.startswith(f"parts.{slot}.ops.") for k in dropped)
    arch = sample(pruned, 1, np.random.default_rng(0))[0]
    assert net(torch.randn(2, 3, 32, 32), arch).shape == (2, 10)


def test_path_sampler_is_uniform_and_respects_a_latency_band():
    sp = tiny_space()
    sampler = PathSampler(sp, seed=3)
    vecs = np.stack([sampler.sample().to_vector() for _ in range(600)])
    for j, c in enumerate(sp.candidates):
        counts = np.bincount(vecs[:, j], minlength=len(c))
        assert counts.min() > 600 / len(c) * 0.7

    class FakePredictor:  # latency = number of non-identity ops, to check the band logic alone
        def predict(self, v):
            return np.array([float(sum(sp.layers[j].candidates[i].kernel > 0 for j, i in enumerate(v)))])

    banded = PathSampler(sp, seed=3, predictor=FakePredictor(), band=Band(3, 3))
    for _ in range(20):
        assert all(not op.is_identity for op in banded.sample().ops)


def test_training_resumes_exactly(tmp_path):
    sp = tiny_space()
    data = _data(96)
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=16, seed=0)

    def run(ckpt, epochs_first=None):
        torch.manual_seed(0)
        net = Supernet(sp)
        sampler = PathSampler(sp, seed=0)
        if epochs_first is not None:
            train(
                net,
                data,
                TrainConfig(**{**cfg.__dict__, "epochs": 3}),
                ckpt,
                sampler,
                on_epoch=lambda s: _stop_after(s, epochs_first),
            )
        return net

    full = run(tmp_path / "full.pt", None)
    train(full, data, cfg, tmp_path / "full.pt", PathSampler(sp, seed=0))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part.pt", epochs_first=1)
    torch.manual_seed(123)  # a different process state: everything must come from the checkpoint
    resumed = Supernet(sp)
    hist = train(resumed, data, cfg, tmp_path / "part.pt", PathSampler(sp, seed=0))
    assert [h.epoch for h in hist] == [0, 1, 2]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k


def _stop_after(stats, n):
    if stats.epoch + 1 >= n + 1:
        raise KeyboardInterrupt
    return None


def test_one_shot_evaluator_memoizes():
    torch.manual_seed(0)
    sp = tiny_space()
    net = Supernet(sp)
    ev = OneShotEvaluator(net, _data(40, seed=1), _data(64), bn_images=32, batch_size=16, state_tag="s0")
    archs = sample(sp, 3, np.random.default_rng(0))
    first = ev(archs)
    again = ev(archs + archs[:1])
    assert ev.evaluated == len({str(a) for a in archs}) and np.array_equal(again[:3], first)
    assert all(0 <= a <= 1 for a in first)
    sub = net.extract(archs[0])
    recalibrate_bn(sub, ev.calib, torch.device("cpu"))
    assert top1(sub, ev.val_loader, torch.device("cpu")) == first[0]
    assert isinstance(archs[0], Architecture)


def test_chain_layers_and_aligned_candidates_compute_their_reference_exactly():
    torch.manual_seed(0)
    sp = proxy_space(basic(), resolution=32, width=0.25, num_classes=10)
    net = Supernet(sp)
    chain = net.chain_layers()
    # the first SBS layer and each stage's first layer: no residual path, several convolutions
    assert sorted(chain) == [j for j, L in enumerate(sp.layers) if L.position == 1]
    assert all(str(sp.layers[j].candidates[i]) in ("IBConv_K3_E1", "IBConv_K3_E3") for j, i in chain.items())
    x = torch.randn(6, 3, 32, 32)
    rng = np.random.default_rng(1)
    base = [int(rng.integers(len(c))) for c in sp.candidates]

    def path(vec):
        return Architecture(sp, tuple(sp.candidates[j][i] for j, i in enumerate(vec)))

    ref = list(base)
    for j, i in chain.items():
        ref[j] = i
    others = [list(base) for _ in range(3)]
    for k, vec in enumerate(others):
        for j in chain:
            vec[j] = (chain[j] + 1 + k) % len(sp.candidates[j])
    net.train()  # batch statistics: at initialisation, eval-mode signals fade to the classifier's bias
    with torch.no_grad():
        before = [net(x, path(v)) for v in others]
        assert not any(torch.allclose(b, net(x, path(ref)), atol=1e-3) for b in before)
        net.align_candidates(chain)
        for mode in (net.eval, net.train):
            mode()
            want = net(x, path(ref))
            for v in others:
                torch.testing.assert_close(net(x, path(v)), want, atol=1e-5, rtol=1e-4)
    # the extra channels are not a dead copy: their projection gets a gradient at once
    net.train()
    k7e6 = net.layers[max(chain)].ops["IBConv_K7_E6"]
    v = list(ref)
    v[max(chain)] = [str(c) for c in sp.candidates[max(chain)]].index("IBConv_K7_E6")
    net(x, path(v)).sum().backward()
    mid = k7e6.project[0].weight.shape[1] // 2
    assert k7e6.project[0].weight.grad[:, mid:].abs().sum() > 0


def test_warm_up_holds_chain_layers_then_aligns_once(tmp_path, monkeypatch):
    torch.manual_seed(0)
    sp = tiny_space()
    net = Supernet(sp)
    chain = net.chain_layers()
    assert chain
    seen: list[tuple[int, dict | None]] = []
    aligned: list[int] = []
    sampler = PathSampler(sp, 0)
    orig_sample, orig_align = sampler.sample, net.align_candidates
    epoch = {"now": 0}

    def spy_sample(hold=None):
        seen.append((epoch["now"], hold))
        return orig_sample(hold)

    def spy_align(layers):
        aligned.append(epoch["now"])
        orig_align(layers)

    monkeypatch.setattr(sampler, "sample", spy_sample)
    monkeypatch.setattr(net, "align_candidates", spy_align)
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=16, amp=False, warmup_epochs=1)

    def on_epoch(stats):
        epoch["now"] = stats.epoch + 1

    ck = tmp_path / "ck.pt"
    train(net, _data(32), cfg, ck, sampler, on_epoch=on_epoch, device=torch.device("cpu"))
    assert aligned == [1]
    assert {str(h) for e, h in seen if e == 0} == {str(chain)} and all(h is None for e, h in seen if e > 0)
    train(net, _data(32), cfg, ck, sampler, device=torch.device("cpu"))  # finished: resuming aligns nothing
    assert aligned == [1]
    with pytest.raises(Exception, match="warmup-epochs must be 0 or fewer than"):
        TrainConfig(epochs=3, warmup_epochs=3)


def test_a_supernet_at_chance_gets_a_hint_naming_the_fix():
    from hnas.train import EpochStats, chance_hint

    at_chance = [EpochStats(0, 2.4, 0.11, 0.05, 1.0)]
    hint = chance_hint(at_chance, 10, TrainConfig(epochs=12))
    assert "chance accuracy" in hint and "--warmup-epochs 4" in hint
    assert "train longer" in chance_hint(at_chance, 10, TrainConfig(epochs=12, warmup_epochs=4))
    assert chance_hint([EpochStats(0, 0.7, 0.9, 0.05, 1.0)], 10, TrainConfig(epochs=12)) is None


def test_the_continuous_schedule_runs_one_learning_rate_curve_over_the_stages(tmp_path, monkeypatch):
    """M = 4 with the continuous schedule steps through exactly the learning rates M = 2 steps through; the restart
    schedule (the paper's) starts each stage again from its own rate."""
    from hnas.recipes import continuous_lrs
    from hnas.settings import SearchSettings

    data = _data(n=32)  # batch 8: 4 steps per epoch
    sp = proxy_space(tiny_space(), resolution=32, width=0.5, num_classes=10)

    seen: list[float] = []
    original = torch.optim.SGD.step

    def step(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *a, **kw)

    def rates(search: SearchSettings) -> list[float]:
        seen.clear()
        for k in range(1, search.stages):
            lr, lr_end = search.stage_lr(k)
            cfg = TrainConfig(epochs=search.epochs[k - 1], lr=lr, batch_size=8, seed=0)
            net = Network(sample(sp, 1, np.random.default_rng(0))[0])
            train(net, data, cfg, tmp_path / f"{search.schedule}{search.stages}-{k}.pt", lr_end=lr_end)
        return list(seen)

    monkeypatch.setattr(torch.optim.SGD, "step", step)

    one = rates(SearchSettings(stages=2, epochs=[6], lrs=[0.3]))
    assert one == pytest.approx([0.3 * (1 - s / 24) for s in range(24)])
    three = SearchSettings(stages=4, epochs=[3, 2, 1], lrs=continuous_lrs([3, 2, 1], 0.3), schedule="continuous")
    assert rates(three) == pytest.approx(one)
    paper = rates(SearchSettings(stages=4, epochs=[3, 2, 1], lrs=[0.3, 0.06, 0.06]))
    assert paper[12] == pytest.approx(0.06) and paper[11] == pytest.approx(0.3 / 12)  # a restart after stage 1


def test_a_hint_names_only_options_of_the_command_that_trained():
    import re

    from hnas.train import EpochStats, chance_hint
    from hnas.workflows.demo import DEMO_OPTIONS
    from hnas.workflows.study import STUDY_OPTIONS
    from tests.harness import run_cli

    at_chance = [EpochStats(0, 2.4, 0.11, 0.05, 1.0)]
    for command, options in ((["demo"], DEMO_OPTIONS), (["study"], STUDY_OPTIONS)):
        helptext = run_cli(*command, "--help").stdout
        for cfg in (TrainConfig(epochs=12), TrainConfig(epochs=12, warmup_epochs=4)):
            hint = chance_hint(at_chance, 10, cfg, options)
            named = re.findall(r"--[a-z-]+", hint)
            assert named and all(flag in helptext for flag in named), (command, hint)
    later = chance_hint(at_chance, 10, TrainConfig(epochs=12), first=False)  # a fine-tuning stage: no warm-up
    assert "--warmup-epochs" not in later and "train longer (--epochs)" in later
