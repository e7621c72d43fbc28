import pytest
import torch

from course_utils import layers, unet
from course_utils.unet import UNetConfig, build_unet, count_parameters


def test_blocks_change_sizes_as_documented():
    x = torch.randn(2, 4, 28, 28)
    assert layers.Conv(4, 6)(x).shape == (2, 6, 28, 28)
    assert layers.DownConv(4, 6)(x).shape == (2, 6, 14, 14)
    assert layers.UpConv(4, 6)(x).shape == (2, 6, 56, 56)
    z = layers.Flatten(7)(torch.randn(2, 8, 7, 7))
    assert z.shape == (2, 8, 1, 1)
    assert layers.Unflatten(8, 7)(z).shape == (2, 8, 7, 7)
    assert layers.FCBlock(3, 5)(torch.randn(2, 3)).shape == (2, 5)


def test_flatten_is_the_spatial_mean():
    x = torch.randn(2, 3, 7, 7)
    torch.testing.assert_close(layers.Flatten(7)(x)[..., 0, 0], torch.nn.functional.gelu(x.mean(dim=(2, 3))))


def test_sinusoidal_embedding_values():
    emb = layers.sinusoidal_embedding(torch.tensor([0.0, 0.5]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert emb[1, 0].item() == pytest.approx(torch.sin(torch.tensor(500.0)).item(), abs=1e-4)
    with pytest.raises(ValueError):
        layers.sinusoidal_embedding(torch.zeros(1), 7)


def test_class_embedding_one_hot_and_null():
    emb = layers.ClassEmbedding(10)
    out = emb(torch.tensor([3, -1]), 2, torch.device("cpu"))
    assert out[0].argmax() == 3 and out[0].sum() == 1 and out[1].sum() == 0
    assert emb(None, 2, torch.device("cpu")).abs().sum() == 0
    with pytest.raises(ValueError):
        emb(torch.tensor([10, 0]), 2, torch.device("cpu"))


def test_vector_embedding_null_rows():
    emb = layers.VectorEmbedding(32, 16)
    with torch.no_grad():
        emb.null.fill_(7.0)
    cond = torch.rand(3, 32)
    cond[1] = float("nan")
    out = emb(cond, 3, torch.device("cpu"))
    torch.testing.assert_close(out[1], torch.full((16,), 7.0))
    assert torch.isfinite(out).all() and not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError):
        emb(torch.rand(3, 31), 3, torch.device("cpu"))


@pytest.mark.parametrize("D, params", [(64, 1_975_361), (128, 7_891_073)])
def test_mnist_unet_widths_and_size(D, params):
    model = build_unet(UNetConfig.mnist(D, time_cond=False))
    assert count_parameters(model) == params  # Berkeley's D = 64 / 128 sizes: about 2M / 8M
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("embedding", ["scalar", "sinusoidal"])
def test_time_conditioning_changes_output(embedding):
    torch.manual_seed(0)
    model = build_unet(UNetConfig.mnist(8, time_embedding=embedding)).eval()
    x = torch.randn(2, 1, 28, 28)
    a, b = model(x, torch.full((2,), 0.1)), model(x, torch.full((2,), 0.9))
    assert a.shape == x.shape and not torch.allclose(a, b)
    torch.testing.assert_close(model(x, torch.tensor(0.1)), a)  # scalar t broadcasts
    with pytest.raises(ValueError, match="pass t"):
        model(x)


def test_class_conditioning_changes_output_and_accepts_null():
    torch.manual_seed(0)
    model = build_unet(UNetConfig.mnist(8, cond="class")).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.rand(2)
    out3 = model(x, t, torch.tensor([3, 3]))
    out5 = model(x, t, torch.tensor([5, 5]))
    assert not torch.allclose(out3, out5)
    torch.testing.assert_close(model(x, t, torch.tensor([-1, -1])), model(x, t, None))


def test_bad_inputs_have_clear_errors():
    model = build_unet(UNetConfig.mnist(8, time_cond=False))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="not conditioned"):
        model(torch.randn(2, 1, 28, 28), None, torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        build_unet(UNetConfig.mnist(8, cond="text"))
    with pytest.raises(ValueError):
        build_unet(UNetConfig(arch="transformer"))


def test_config_round_trip():
    cfg = UNetConfig.mnist(32, cond="class")
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    for field in ("cond_angles", "scale_shift"):  # written only when set: the shipped records keep their layout
        assert field not in cfg.to_dict()
    adaptive = UNetConfig.photo_small(16, base_channels=8, groups=4, scale_shift=True)
    assert adaptive.to_dict()["scale_shift"] is True and UNetConfig.from_dict(adaptive.to_dict()) == adaptive
    with pytest.raises(ValueError):
        UNetConfig.from_dict({"depth": 3})


@pytest.mark.parametrize("cond_kind", ["none", "class"])
def test_large_cpu_batches_run_in_chunks_with_the_same_output(monkeypatch, cond_kind):
    torch.manual_seed(0)
    model = build_unet(UNetConfig.mnist(8, cond=cond_kind)).eval()
    x, t = torch.randn(7, 1, 28, 28), torch.rand(7)
    cond = torch.tensor([0, 1, 2, -1, 4, 5, 6]) if cond_kind == "class" else None
    with torch.no_grad():
        whole = model(x, t, cond)
        monkeypatch.setattr(unet, "CPU_CHUNK", 3)  # chunks of 3, 3 and 1
        calls = []
        handle = model.enc1.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        chunked = model(x, t, cond)
        shared_t = model(x, torch.tensor(0.5), cond)  # a 0-dim time is shared by every chunk
        handle.remove()
    assert calls == [3, 3, 1, 3, 3, 1]
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared_t, model(x, torch.full((7,), 0.5), cond).detach(), rtol=1e-5, atol=1e-5)
    with torch.enable_grad():  # training sees the whole batch (BatchNorm statistics, one backward)
        calls.clear()
        handle = model.enc1.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        model(x, t, cond)
        handle.remove()
    assert calls == [7]
    if cond_kind == "class":
        with torch.no_grad(), pytest.raises(ValueError, match=r"\(7,\)"):  # the error names the whole batch
            model(x, t, torch.zeros(6, dtype=torch.long))


def test_an_angle_condition_enters_as_cos_and_sin():
    """With cond_angles, a hue of 0.999 turns is the neighbour of 0.001 (and 0 is 1), not the far end."""
    torch.manual_seed(0)
    cfg = UNetConfig.photo_small(16, base_channels=8, groups=4, cond_angles=(0,))
    model = build_unet(cfg).eval()
    assert model.cond_embedding.d_in == 33  # 32 conditions, the angle's cosine in its column, its sine appended
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([0.5])
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised layers (the output, each block's last conv) hide the condition
            if not p.abs().sum():
                p.normal_(0, 0.1)

        def out(hue: float) -> torch.Tensor:
            cond = torch.full((1, 32), 0.5)
            cond[0, 0] = hue
            return model(x, t, cond)

        torch.testing.assert_close(out(0.0), out(1.0))
        near = (out(0.999) - out(0.001)).abs().max()
        far = (out(0.25) - out(0.75)).abs().max()
        assert near < 0.05 * far
        # by hand: the embedding's input is the standardised vector with column 0 = cos, plus sin at the end
        cond = torch.rand(2, 32)
        std = (cond - model.cond_mean) / model.cond_std
        by_hand = torch.cat([torch.cos(2 * torch.pi * cond[:, :1]), std[:, 1:]], 1)
        by_hand = torch.cat([by_hand, torch.sin(2 * torch.pi * cond[:, :1])], 1)
        emb = model.embed(torch.full((2,), 0.5), cond, 2, torch.device("cpu"))
        want = model.time_mlp(layers.sinusoidal_embedding(torch.full((2,), 0.5), 8)) + model.cond_embedding.mlp(by_hand)
        torch.testing.assert_close(emb, want)
        # a row of NaN is still "no condition": the learned null embedding
        cond[1] = float("nan")
        emb = model.embed(torch.full((2,), 0.5), cond, 2, torch.device("cpu"))
        time_only = model.time_mlp(layers.sinusoidal_embedding(torch.full((1,), 0.5), 8))[0]
        torch.testing.assert_close(emb[1], time_only + model.cond_embedding.null)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("angles", [(32,), (-1,), (0, 0)])
def test_bad_angle_entries_are_refused(angles):
    with pytest.raises(ValueError, match="cond_angles"):
        build_unet(UNetConfig.photo_small(16, base_channels=8, groups=4, cond_angles=angles))


@pytest.mark.parametrize("scale_shift", [False, True])
def test_a_resblock_offsets_or_scales_and_shifts_its_channels_by_the_embedding(scale_shift):
    """Plain: the embedding adds one number per channel before the second GroupNorm. With
    scale_shift (adaptive GroupNorm): it gives (scale, shift) per channel after that norm."""
    torch.manual_seed(0)
    block = layers.ResBlock(8, 16, 12, groups=4, scale_shift=scale_shift)
    torch.nn.init.normal_(block.conv2.weight, 0, 0.1)  # the zero start would hide the second half
    x, emb = torch.randn(2, 8, 5, 5), torch.randn(2, 12)
    silu = torch.nn.functional.silu
    with torch.no_grad():
        h = block.conv1(silu(block.norm1(x)))
        e = block.emb(silu(emb))[:, :, None, None]
        if scale_shift:
            assert e.shape[1] == 32  # a scale and a shift for each of the 16 channels
            h = block.norm2(h) * (1 + e[:, :16]) + e[:, 16:]
        else:
            assert e.shape[1] == 16
            h = block.norm2(h + e)
        torch.testing.assert_close(block(x, emb), block.skip(x) + block.conv2(silu(h)))


def test_scale_shift_doubles_only_the_embedding_layers_of_the_resblocks():
    plain = build_unet(UNetConfig.photo_small(16, base_channels=8, groups=4))
    adaptive = build_unet(UNetConfig.photo_small(16, base_channels=8, groups=4, scale_shift=True))
    blocks = [m for m in plain.modules() if isinstance(m, layers.ResBlock)]
    extra = sum(b.emb.weight.numel() + b.emb.bias.numel() for b in blocks)
    assert count_parameters(adaptive) - count_parameters(plain) == extra
    assert all(m.scale_shift for m in adaptive.modules() if isinstance(m, layers.ResBlock))
    with pytest.raises(ValueError, match="scale_shift"):  # the MNIST UNet has no ResBlocks to change
        build_unet(UNetConfig.mnist(8, scale_shift=True))
    x, t, cond = torch.randn(2, 3, 16, 16), torch.rand(2), torch.rand(2, 32)
    assert adaptive(x, t, cond).shape == x.shape
