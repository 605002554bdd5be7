"""train.cpu_bf16: bf16 autocast of CPU training steps (kaggle_kit.engine.cpu_amp) and its selection."""
import numpy as np

from tests.conftest import ROOT, TINY_SEG, run_tool


def _t(**kw):
    from kaggle_kit.engine.runner import train_defaults

    return dict(train_defaults(), **kw)


def test_wrapper_choice(monkeypatch, capsys):
    from kaggle_kit.engine import cpu_amp
    from kaggle_kit.engine.runner import optim_wrapper_type

    assert optim_wrapper_type(_t(amp=True), cuda=True) == "AmpOptimWrapper"
    assert optim_wrapper_type(_t(amp=False, cpu_bf16=True), cuda=True) == "OptimWrapper"  # CUDA: amp decides
    assert optim_wrapper_type(_t(), cuda=False) == "OptimWrapper"  # default off
    monkeypatch.setattr(cpu_amp, "cpu_bf16_native", lambda: True)
    assert optim_wrapper_type(_t(cpu_bf16=True), cuda=False) == cpu_amp.WRAPPER_NAME
    monkeypatch.setattr(cpu_amp, "cpu_bf16_native", lambda: False)
    capsys.readouterr()
    assert optim_wrapper_type(_t(cpu_bf16=True), cuda=False) == "OptimWrapper"  # emulated bf16 is slower: fp32
    assert "no native bf16" in capsys.readouterr().out


def test_wrapper_autocasts_the_step_and_keeps_fp32_weights():
    import torch
    from mmengine.optim import build_optim_wrapper

    from kaggle_kit.engine.cpu_amp import register_cpu_bf16_wrapper

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    ref = torch.nn.Sequential(*[type(m)(*a) for m, a in zip(net, [(3, 4, 3), (4,), (4, 2, 1)])])
    ref.load_state_dict(net.state_dict())
    name = register_cpu_bf16_wrapper()
    assert register_cpu_bf16_wrapper() == name  # registering twice is harmless
    ow = build_optim_wrapper(net, dict(type=name, optimizer=dict(type="SGD", lr=0.1)))
    x = torch.randn(2, 3, 9, 7)
    assert net(x).dtype == torch.float32  # outside the step: fp32
    with ow.optim_context(net):
        out = net(x)
        assert out.dtype == torch.bfloat16  # convolutions autocast inside the step
        loss = out.float().square().mean()
    ow.update_params(loss)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    # the same SGD step in fp32, by hand: the bf16 step lands within bf16 rounding of it
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref(x).square().mean().backward()
    opt.step()
    for p, q in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=2e-2, rtol=2e-2)
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), ref.parameters()))  # not an fp32 step


def test_train_tool_with_cpu_bf16(synth_cache, tmp_path):
    from kaggle_kit.engine.checkpoint import load_inference_checkpoint
    from kaggle_kit.engine.cpu_amp import cpu_bf16_native

    cfg = ROOT / "configs/seg25d/tiny_cpu.yaml"
    ov = [f"cache={synth_cache}", f"work_root={tmp_path / 'work'}", f"pred_root={tmp_path / 'preds'}", *TINY_SEG,
          "train.cpu_bf16=true"]
    p = run_tool("train.py", cfg, "--fold", 0, *ov)
    if cpu_bf16_native():
        assert "bf16 autocast for the training steps" in p.stdout + p.stderr
    else:
        assert "no native bf16" in p.stdout + p.stderr
    sd, meta = load_inference_checkpoint(tmp_path / "work/seg25d/tiny_cpu/fold0/last.pth")
    import torch

    floats = [v for v in sd.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in floats)
    assert meta["family"] == "seg25d"
