import functools
import json

import pytest
import torch
from torch import nn

from course_utils import losses, plotting, schedules, training
from course_utils.unet import UNetConfig, build_unet


def _tiny_model(seed=0, cond="class"):
    torch.manual_seed(seed)
    return build_unet(UNetConfig.mnist(4, cond=cond))


def _data(n=24):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)


LOSS = functools.partial(losses.ddpm_loss, schedule=schedules.linear_schedule(100), p_uncond=0.1)
KW = dict(batch_size=8, lr=1e-3, lr_schedule="exponential", gamma=0.5, ema_decay=0.9, seed=3, progress=False)


def test_ema_update_maths():
    model, ema = nn.Linear(3, 2), nn.Linear(3, 2)
    old = [p.detach().clone() for p in ema.parameters()]
    training.ema_update(ema, model, decay=0.9)
    for p_ema, p_old, p in zip(ema.parameters(), old, model.parameters()):
        torch.testing.assert_close(p_ema, 0.9 * p_old + 0.1 * p)
    training.ema_update(ema, model, decay=0.0)
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        torch.testing.assert_close(p_ema, p)


def test_ema_warm_up():
    assert training.ema_decay_at(0.999, 0) == 0.1 and training.ema_decay_at(0.999, 10**6) == 0.999
    model, ema = nn.Linear(3, 2), nn.Linear(3, 2)
    old = [p.detach().clone() for p in ema.parameters()]
    training.ema_update(ema, model, decay=0.999, step=0)
    for p_ema, p_old, p in zip(ema.parameters(), old, model.parameters()):
        torch.testing.assert_close(p_ema, 0.1 * p_old + 0.9 * p)


def test_data_order_is_a_function_of_seed_and_epoch():
    x = torch.arange(10)[:, None].float()
    order = lambda seed, epoch: torch.cat([b[0] for b in training.batches((x,), 4, seed, epoch)]).flatten()  # noqa: E731
    assert torch.equal(order(1, 2), order(1, 2))
    assert not torch.equal(order(1, 2), order(1, 3))
    assert sorted(order(1, 2).tolist()) == list(range(10))


def test_lr_schedule():
    assert training.lr_at(3, 1e-2, "constant", None) == 1e-2
    assert training.lr_at(2, 1e-2, "exponential", 0.1) == pytest.approx(1e-4)
    assert training.lr_at(0, 1e-2, "cosine", None, progress=0.5) == pytest.approx(5e-3)  # per step, to 0
    assert training.lr_at(0, 1e-2, "cosine", None, progress=1.0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        training.lr_at(0, 1e-2, "linear", None)


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path):
    data = _data()
    straight = training.train(_tiny_model(), LOSS, data, epochs=2, **KW)
    training.train(_tiny_model(), LOSS, data, epochs=1, run_dir=tmp_path, **KW)
    resumed = training.train(_tiny_model(seed=99), LOSS, data, epochs=2, run_dir=tmp_path, **KW)
    assert resumed.resumed_from == 1 and len(resumed.losses) == len(straight.losses) == 6
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-6)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_resume_refuses_a_run_with_other_settings(tmp_path):
    data = _data()
    training.train(_tiny_model(), LOSS, data, epochs=1, run_dir=tmp_path, **KW)
    with pytest.raises(ValueError, match=r"other settings \(lr 0.001 -> 0.01\)"):
        training.train(_tiny_model(), LOSS, data, epochs=2, run_dir=tmp_path, **dict(KW, lr=1e-2))
    with pytest.raises(ValueError, match="hidden"):
        training.train(build_unet(UNetConfig.mnist(8, cond="class")), LOSS, data, epochs=2, run_dir=tmp_path, **KW)
    assert training.read_record(training.last_checkpoint(tmp_path))["epoch"] == 1  # nothing overwritten
    fresh = training.train(_tiny_model(), LOSS, data, epochs=1, run_dir=tmp_path, resume=False, **dict(KW, lr=1e-2))
    assert (
        fresh.resumed_from is None
        and training.read_record(training.last_checkpoint(tmp_path))["hyperparameters"]["lr"] == 1e-2
    )


def test_resume_restores_the_gradient_scaler(tmp_path, monkeypatch):
    # float16 training scales the loss; the scale it has grown to must survive an interruption.
    # A CPU scaler with fast growth stands in for the CUDA one (autocast stays off: the scaling
    # is exact in float32, so the losses match too).
    def mixed_precision(amp, device):
        return False, torch.float32, torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)

    monkeypatch.setattr(training, "_mixed_precision", mixed_precision)
    data = _data()
    straight = training.train(_tiny_model(), LOSS, data, epochs=2, run_dir=tmp_path / "straight", **KW)
    training.train(_tiny_model(), LOSS, data, epochs=1, run_dir=tmp_path / "cut", **KW)
    first = training.read_record(training.last_checkpoint(tmp_path / "cut"))["grad_scaler"]
    assert first["scale"] == 2.0**11 and first["_growth_tracker"] == 1  # 3 steps: grown once, one step toward the next
    resumed = training.train(_tiny_model(seed=99), LOSS, data, epochs=2, run_dir=tmp_path / "cut", **KW)
    want = training.read_record(training.last_checkpoint(tmp_path / "straight"))["grad_scaler"]
    got = training.read_record(training.last_checkpoint(tmp_path / "cut"))["grad_scaler"]
    assert want["scale"] == 2.0**13 and got == want
    assert resumed.losses == pytest.approx(straight.losses, abs=1e-6)


def test_checkpoint_round_trip_and_record(tmp_path):
    model = _tiny_model()
    result = training.train(model, LOSS, _data(), epochs=1, run_dir=tmp_path, **KW)
    path = training.last_checkpoint(tmp_path)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["epoch"] == 1 and record["step"] == 3 and len(record["losses"]) == 3
    assert record["model_config"] == model.cfg.to_dict() and record["hyperparameters"]["seed"] == 3
    fresh = _tiny_model(seed=5)
    training.load_weights(fresh, path, ema=True)
    for a, b in zip(result.ema.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b)
    out = training.export_weights(result.ema, tmp_path / "shipped.safetensors", {"note": "test"})
    fresh16 = _tiny_model(seed=6)
    training.load_weights(fresh16, out)
    for a, b in zip(result.ema.parameters(), fresh16.parameters()):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)  # float16 storage


def test_tampered_checkpoint_fails_clearly(tmp_path):
    training.train(_tiny_model(), LOSS, _data(), epochs=1, run_dir=tmp_path, **KW)
    path = training.last_checkpoint(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(training.CheckpointError, match="SHA-256"):
        training.load_weights(_tiny_model(), path)
    with pytest.raises(training.CheckpointError, match="SHA-256"):
        training.train(_tiny_model(), LOSS, _data(), epochs=2, run_dir=tmp_path, **KW)


def test_sample_grids_and_loaders(tmp_path):
    x, y = _data(16)
    calls = []

    def sample_fn(model, epoch):
        calls.append(epoch)
        assert not model.training
        return torch.rand(4, 1, 28, 28) * 2 - 1

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    result = training.train(
        _tiny_model(),
        LOSS,
        loader,
        epochs=2,
        sample_fn=sample_fn,
        sample_every=1,
        save_samples=plotting.sample_grid_saver(tmp_path),
        run_dir=tmp_path,
        **{**KW, "ema_decay": None},
    )
    assert calls == [1, 2] and len(result.losses) == 4 and result.ema is None
    assert (tmp_path / "samples_epoch_0002.png").is_file()


def test_sample_grids_map_the_models_range_and_warn_about_unit_images(tmp_path):
    import matplotlib.pyplot as plt

    x, y = _data(16)
    digit = -torch.ones(2, 1, 28, 28)  # black background
    digit[:, :, 10:18, 12:16] = 1.0  # a white stroke

    training.train(
        _tiny_model(),
        LOSS,
        (x, y),
        epochs=1,
        sample_fn=lambda m, e: digit,
        sample_every=1,
        save_samples=plotting.sample_grid_saver(tmp_path / "signed"),
        run_dir=tmp_path / "signed",
        **{**KW, "ema_decay": None},
    )
    png = plt.imread(tmp_path / "signed" / "samples_epoch_0001.png")[..., 0]
    assert png[2 + 0, 2 + 0] == pytest.approx(0.0, abs=0.01)  # background pixel of the first image: black
    assert png[2 + 12, 2 + 13] == pytest.approx(1.0, abs=0.01)  # on the stroke: white

    with pytest.warns(UserWarning, match=r"\[0, 1\]"):
        training.train(
            _tiny_model(),
            LOSS,
            (x, y),
            epochs=1,
            sample_fn=lambda m, e: (digit + 1) / 2,
            sample_every=1,
            save_samples=plotting.sample_grid_saver(tmp_path / "unit"),
            run_dir=tmp_path / "unit",
            **{**KW, "ema_decay": None},
        )


def test_code_fingerprint_follows_the_code_not_the_name():
    def loss_a(model, x):
        return (model(x) - x).pow(2).mean()

    def loss_b(model, x):
        return (model(x) - x).pow(2).sum()  # the mean-vs-sum mistake

    def loss_a_again(model, x):
        return (model(x) - x).pow(2).mean()

    fp = training.code_fingerprint
    assert fp(loss_a) == fp(loss_a_again) and len(fp(loss_a)) == 8
    assert fp(loss_a) != fp(loss_b)
    assert fp(loss_a, loss_b) != fp(loss_a)

    class Block(torch.nn.Module):
        def forward(self, x):
            return x + 1

    class OtherBlock(torch.nn.Module):
        def forward(self, x):
            return x - 1

    assert fp(Block) != fp(OtherBlock)
    with pytest.raises(TypeError, match="Python functions or classes"):
        fp(len)


def test_train_prints_a_time_estimate_for_the_whole_run_from_its_first_steps(capsys):
    x, y = _data(n=48)  # 6 batches per epoch, 3 epochs: 18 steps, the estimate after 11
    kw = dict(KW, progress=True)
    training.train(_tiny_model(), LOSS, (x, y), epochs=3, **kw)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("estimated time")]
    assert len(lines) == 1 and "18 steps" in lines[0] and "cpu" in lines[0], lines


def test_no_estimate_for_a_run_shorter_than_the_measured_steps(capsys):
    x, y = _data(n=16)
    training.train(_tiny_model(), LOSS, (x, y), epochs=1, **dict(KW, progress=True))
    assert "estimated time" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "per_step, steps, span", [(0.01, 100, "about 1 s"), (0.5, 600, "about 5 min"), (2.0, 9000, "about 5.0 h")]
)
def test_estimate_line_picks_a_readable_unit(per_step, steps, span):
    assert span in training.estimate_line(per_step, steps, "cpu")


def test_cpu_training_uses_the_fused_adam_update():
    for name in ("adam", "adamw"):
        opt = training._make_optimizer(name, torch.nn.Linear(2, 2).parameters(), 1e-3, 0.0)
        assert opt.defaults.get("fused") is True  # torch >= 2.4; older versions fall back to the loop
        assert len(opt.param_groups[0]["params"]) == 2  # the parameter iterator was not used up
    with pytest.raises(ValueError, match="'adam' or 'adamw'"):
        training._make_optimizer("sgd", torch.nn.Linear(2, 2).parameters(), 1e-3, 0.0)


def test_cpu_training_runs_channels_last_and_hands_back_the_usual_layout(monkeypatch):
    data = _data()
    seen = []
    inner = LOSS

    def conv_weight(model):  # a conv with several input channels (with one, both layouts coincide)
        return next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1).weight

    def watching(model, batch, generator=None):
        seen.append(conv_weight(model).is_contiguous())
        return inner(model, batch, generator=generator)

    fast = training.train(_tiny_model(), watching, data, epochs=2, **KW)
    assert seen and not any(seen)  # NHWC inside the loop
    assert conv_weight(fast.model).is_contiguous() and conv_weight(fast.ema).is_contiguous()
    for module in (fast.model, fast.ema):
        assert all(p.is_contiguous() for p in module.parameters())  # NCHW again afterwards
    monkeypatch.setattr(training, "CPU_CHANNELS_LAST", False)
    plain = training.train(_tiny_model(), LOSS, data, epochs=2, **KW)
    assert fast.losses == pytest.approx(plain.losses, abs=1e-5)  # the same numbers, in another order in memory
    # Compare what the models compute, not every number: a conv bias just before a BatchNorm has no
    # gradient but rounding noise, which Adam scales up to full steps, differently in each layout;
    # the BatchNorm takes the same shift out again.
    x, c = data
    t = torch.linspace(0.1, 0.9, len(x))
    with torch.no_grad():
        torch.testing.assert_close(fast.ema(x, t, c), plain.ema(x, t, c), atol=2e-3, rtol=0)


def test_the_layout_helper_moves_the_optimiser_moments_with_the_weights():
    model = nn.Sequential(nn.Conv2d(2, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 1))
    opt = training._make_optimizer("adam", model.parameters(), 1e-3, 0.0)
    model(torch.randn(2, 2, 6, 6)).sum().backward()
    opt.step()
    training._set_layout((model, None), opt, True)
    weight = model[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert opt.state[weight]["exp_avg"].is_contiguous(memory_format=torch.channels_last)
    assert model[2].weight.is_contiguous()  # 2-D weights are untouched
    training._set_layout((model, None), opt, False)
    assert weight.is_contiguous() and opt.state[weight]["exp_avg"].is_contiguous()
