"""The feature-conditioned photo model: blocks, UNet configs, data, augmentation, sampling, fidelity,
recipes and checkpoints (the shipped photo-32 included)."""

import matplotlib

matplotlib.use("Agg")

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from course_utils import config, features, guidance, layers, photo_data, photos, schedules, widgets
from course_utils.errors import BadRequest
from course_utils.files import sha256_file
from course_utils.noise import PerSample, image_seed
from course_utils.recipes import Recipe
from course_utils.unet import ResUNet, UNetConfig, build_unet, count_parameters

TINY = UNetConfig.photo_small(16, base_channels=8, groups=4)  # 16 px, 8-16-16 channels, attention at 4x4


def tiny_model(seed: int = 0) -> ResUNet:
    torch.manual_seed(seed)
    model = build_unet(TINY).eval()
    for p in model.parameters():  # leave the zero-initialised outputs: perturb every weight a little
        p.data.add_(0.05 * torch.randn_like(p))
    return model


# ---------------------------------------------------------------------------------------------
# Blocks


def test_resblock_starts_as_its_skip_path_and_uses_the_embedding():
    torch.manual_seed(0)
    x, emb = torch.randn(2, 8, 6, 6), torch.randn(2, 12)
    same = layers.ResBlock(8, 8, 12, groups=4)
    torch.testing.assert_close(same(x, emb), x)  # last conv starts at zero: identity
    wider = layers.ResBlock(8, 16, 12, groups=4)
    assert isinstance(wider.skip, torch.nn.Conv2d) and wider(x, emb).shape == (2, 16, 6, 6)
    torch.nn.init.normal_(same.conv2.weight, std=0.1)
    a, b = same(x, emb), same(x, emb + 1.0)
    assert not torch.allclose(a, b)


def test_self_attention_is_identity_at_start_and_permutation_equivariant():
    torch.manual_seed(0)
    attn = layers.SelfAttention(16, heads=4, groups=4)
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(attn(x), x)
    torch.nn.init.normal_(attn.proj.weight, std=0.2)
    perm = torch.randperm(16)
    shuffled = x.flatten(2)[..., perm].reshape_as(x)  # move pixels around
    out = attn(x).flatten(2)[..., perm].reshape_as(x)
    torch.testing.assert_close(attn(shuffled), out, atol=1e-5, rtol=1e-5)  # no position information
    with pytest.raises(ValueError):
        layers.SelfAttention(10, heads=4)


# ---------------------------------------------------------------------------------------------
# UNet configs


def test_photo256_channel_plan_and_size():
    cfg = UNetConfig.photo256()
    assert (cfg.image_size, cfg.in_channels, cfg.cond, cfg.cond_dim) == (256, 3, "vector", 32)
    assert [cfg.base_channels * m for m in cfg.channel_mults] == [64, 128, 256, 512, 512]
    assert cfg.attn_resolutions == (32, 16) and cfg.num_res_blocks == 2
    with torch.device("meta"):  # no memory, no initialisation: just count
        model = build_unet(cfg)
    assert count_parameters(model) == 104_806_787
    n_attn = sum(isinstance(m, layers.SelfAttention) for m in model.modules())
    assert n_attn == 2 * 2 + 1 + 2 * 3  # encoder 32+16 px, middle, decoder 32+16 px
    assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_photo256_plan_runs_at_a_small_size():
    cfg = UNetConfig.photo256(image_size=32, attn_resolutions=(4, 2))  # same channels, 32 px
    torch.manual_seed(0)
    model = build_unet(cfg).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model(x, torch.rand(1), torch.rand(1, 32)).shape == x.shape


@pytest.mark.parametrize(
    "cfg", [UNetConfig.photo_small(), TINY, UNetConfig.photo_small(16, base_channels=8, groups=4, cond="none")]
)
def test_small_configs_shapes(cfg):
    model = build_unet(cfg).eval()
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    cond = torch.rand(2, 32) if cfg.cond == "vector" else None
    with torch.no_grad():
        assert model(x, torch.rand(2), cond).shape == x.shape
    with pytest.raises(ValueError, match="expected images"):
        model(torch.randn(2, 3, cfg.image_size + 8, cfg.image_size + 8), torch.rand(2), cond)
    with pytest.raises(ValueError, match="pass t"):
        model(x)


def test_mnist_config_unchanged_by_new_fields():
    cfg = UNetConfig.mnist(16)
    assert cfg.arch == "mnist" and UNetConfig.from_dict(cfg.to_dict()) == cfg
    old = {
        k: v
        for k, v in cfg.to_dict().items()
        if k
        not in (
            "base_channels",
            "channel_mults",
            "num_res_blocks",
            "attn_resolutions",
            "attn_heads",
            "dropout",
            "groups",
        )
    }
    assert UNetConfig.from_dict(old) == cfg  # checkpoints written before the photo fields still load


def test_conditioning_changes_output_and_nan_row_is_none():
    model = tiny_model()
    x, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.5)
    with torch.no_grad():
        a, b = model(x, t, torch.full((2, 32), 0.2)), model(x, t, torch.full((2, 32), 0.8))
        assert not torch.allclose(a, b)
        nan = torch.full((2, 32), float("nan"))
        torch.testing.assert_close(model(x, t, nan), model(x, t, None))
        mixed = torch.stack([torch.full((32,), 0.2), torch.full((32,), float("nan"))])
        out = model(x, t, mixed)
        torch.testing.assert_close(out[0], a[0])
        torch.testing.assert_close(out[1], model(x, t, None)[1])


def test_condition_statistics_normalise_and_travel_in_the_state_dict():
    model = tiny_model()
    x, t, c = torch.randn(1, 3, 16, 16), torch.full((1,), 0.3), torch.rand(1, 32)
    mean, std = torch.rand(32), torch.rand(32) + 0.5
    model.set_condition_stats(mean, std)
    other = tiny_model()
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.cond_std, std)
    with torch.no_grad():
        torch.testing.assert_close(other(x, t, c), model(x, t, c))
        shifted = tiny_model()
        shifted.load_state_dict(model.state_dict())
        shifted.set_condition_stats(mean + 0.3, std)
        assert not torch.allclose(shifted(x, t, c), model(x, t, c))  # the statistics are used
    with pytest.raises(ValueError):
        model.set_condition_stats(torch.zeros(31), torch.ones(31))


def test_cfg_wrapper_on_the_vector_model():
    model = tiny_model()
    x, t, c = torch.randn(2, 3, 16, 16), torch.full((2,), 0.4), torch.rand(2, 32)
    with torch.no_grad():
        cond, uncond = model(x, t, c), model(x, t, None)
        torch.testing.assert_close(guidance.cfg(model, 1.0)(x, t, c), cond, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(guidance.cfg(model, 0.0)(x, t, c), uncond, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            guidance.cfg(model, 3.0)(x, t, c), uncond + 3.0 * (cond - uncond), atol=1e-4, rtol=1e-4
        )


# ---------------------------------------------------------------------------------------------
# Data


@pytest.fixture
def photo_folder(tmp_path):
    """Six small synthetic photos (coloured disks and rings, different sizes) and one corrupt file."""
    import cv2

    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        h, w = 40 + 8 * i, 56 - 4 * i
        img = np.full((h, w, 3), 230, np.uint8)
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, colour, -1)
        if i % 2:
            cv2.circle(img, (w // 2, h // 2), min(h, w) // 8, (230, 230, 230), -1)
        cv2.imwrite(str(folder / ("sub" if i > 3 else "") / f"p{i}.png"), img)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_photo_data_names_stay_importable_from_photos():
    for name in photo_data.__all__:  # notebooks and student copies call photos.load_photos, photos.Augment, ...
        assert getattr(photos, name) is getattr(photo_data, name)
    torch.testing.assert_close(photos.ddim_times(50), schedules.step_times(50, 1000))
    assert photos.ddim_times(7)[0] == 1 and photos.ddim_times(7)[-1] == 0


def test_load_photos_crops_measures_caches_and_reports(photo_folder, tmp_course_dirs):
    ps = photos.load_photos(photo_folder, size=16, progress=False, workers=1)
    assert len(ps) == 6 and ps.images.shape == (6, 3, 16, 16) and ps.images.dtype == torch.uint8
    assert ps.features.shape == (6, 32) and [p.name for p, _ in ps.failures] == ["broken.jpg"]
    expected = features.extract_batch(ps.signed())  # the features of exactly the pixels the model sees
    torch.testing.assert_close(ps.features, expected)
    mean, std = ps.stats()
    assert mean.shape == std.shape == (32,)
    again = photos.load_photos(photo_folder, size=16, progress=False, workers=1)
    torch.testing.assert_close(again.images, ps.images)
    import cv2

    cv2.imwrite(str(photo_folder / "p0.jpg"), np.zeros((20, 20, 3), np.uint8))  # same stem as p0.png
    both = photos.load_photos(photo_folder, size=16, progress=False, workers=1)
    names = [p.name for p in both.paths]
    assert len(both) == 7 and both.images[names.index("p0.jpg")].max() < 10 < both.images[names.index("p0.png")].max()
    with pytest.raises(ValueError, match="at least 8"):
        photos.load_photos(photo_folder, size=4)
    (photo_folder / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        photos.load_photos(photo_folder / "empty", size=16)


def test_augment_flip_and_jitter():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(photos.augment(x, photos.Augment(0, 0, 0, 0, 0), g), x, atol=1e-5, rtol=0)
    flipped = photos.augment(x, photos.Augment(1.0, 0, 0, 0, 0), g)
    torch.testing.assert_close(flipped, x.flip(-1), atol=1e-5, rtol=0)
    jittered = photos.augment(x, photos.Augment(0.5, 0.3, 0.3, 0.3, 0.1), g)
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.allclose(jittered, x)
    gray = torch.full((1, 3, 4, 4), 0.5)  # hue and saturation leave a gray image gray
    torch.testing.assert_close(photos.augment(gray, photos.Augment(0, 0, 0, 0.5, 0.2), g), gray, atol=1e-5, rtol=0)


def test_batches_recompute_features_and_split_ranks(photo_folder, tmp_course_dirs):
    ps = photos.load_photos(photo_folder, size=16, progress=False, workers=1)
    batches = photos.PhotoBatches(ps, 4, augment=photos.Augment(flip=1.0, brightness=0.3), seed=1)
    assert len(batches) == 2
    for x, f in batches:
        torch.testing.assert_close(f, features.extract_batch(x))  # condition and pixels agree
    assert batches.epoch == 1
    plain = photos.PhotoBatches(ps, 4, augment=None, seed=1)
    ranks = [photos.PhotoBatches(ps, 2, augment=None, seed=1, rank=r, world_size=2) for r in (0, 1)]
    idx = [set(b._indices(0).tolist()) for b in ranks]
    assert not idx[0] & idx[1] and len(idx[0] | idx[1]) == 6
    first = [x for x, _ in plain]
    plain.set_epoch(0)
    torch.testing.assert_close(torch.cat([x for x, _ in plain]), torch.cat(first))  # epoch order is reproducible


# ---------------------------------------------------------------------------------------------
# Sampling and bad input


def test_check_features_rejects_bad_vectors():
    good = torch.full((32,), 0.5)
    assert photos.check_features(good, 3).shape == (3, 32)
    with pytest.raises(ValueError, match="32 values"):
        photos.check_features(torch.full((31,), 0.5))
    with pytest.raises(ValueError, match="out of range: dominant_hue"):
        photos.check_features(torch.cat([torch.tensor([1.5]), good[1:]]))
    bad = good.clone()
    bad[19] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite in: circularity"):
        photos.check_features(bad)
    with pytest.raises(ValueError, match="asked for 3"):
        photos.check_features(torch.full((2, 32), 0.5), 3)


def test_generate_sweep_and_like():
    model = tiny_model()
    base = torch.full((32,), 0.5)
    x = photos.generate(model, base, n=2, steps=4, seed=3)
    assert x.shape == (2, 3, 16, 16) and x.abs().max() <= 1
    torch.testing.assert_close(photos.generate(model, base, n=2, steps=4, seed=3), x, rtol=0, atol=0)  # seeded
    assert not torch.allclose(x[0], x[1])  # two images of one request: two seeds
    assert not torch.allclose(photos.generate(model, base, n=2, steps=4, seed=4), x)
    row = photos.feature_sweep(model, base, "dominant_hue", values=[0.0, 1.0], steps=4)
    assert row.shape == (2, 3, 16, 16) and not torch.allclose(row[0], row[1])
    with pytest.raises(ValueError, match="unknown feature"):
        photos.feature_sweep(model, base, "hue", steps=4)
    with pytest.raises(ValueError):
        photos.generate(model, torch.full((32,), 2.0), steps=4)
    with pytest.raises(ValueError, match="2 streams for 3 images"):
        photos.generate(model, base, n=3, steps=4, generator=PerSample([1, 2]))
    with pytest.raises(ValueError, match="noise must have shape"):
        photos.generate(model, base, n=2, steps=4, noise=torch.randn(2, 3, 8, 8))
    img = np.zeros((20, 20, 3), np.float32)
    img[5:15, 5:15] = [0.9, 0.5, 0.1]
    images, target = photos.generate_like(model, img, n=1, steps=3, only="LIGHTING")
    assert images.shape == (1, 3, 16, 16)
    lit = [features.index(n) for n in features.FEATURE_GROUPS["LIGHTING"]]
    torch.testing.assert_close(target[lit], torch.from_numpy(features.extract_features(img))[lit])


def test_generate_draws_each_image_from_its_own_seed():
    """Per-sample noise: an image is the same whether drawn alone or in a batch of 3."""
    model = tiny_model()
    feats = torch.rand(3, 32, generator=torch.Generator().manual_seed(0))
    batch = photos.generate(model, feats, steps=4, seed=7)  # eta = 1: start noise and step noise
    alone = photos.generate(model, feats[:1], steps=4, seed=7)  # image 0 of a request with seed 7
    torch.testing.assert_close(alone[0], batch[0], rtol=0, atol=1e-5)
    third = photos.generate(model, feats[2:], steps=4, generator=PerSample([image_seed(7, 2)]))
    torch.testing.assert_close(third[0], batch[2], rtol=0, atol=1e-5)
    # given start noise replaces the first draw only: the same noise gives the same images
    start = PerSample.from_seed(7, 3).randn((3, 3, 16, 16))
    torch.testing.assert_close(photos.generate(model, feats, steps=4, seed=7, noise=start), batch, rtol=0, atol=1e-6)


def test_generate_switches_the_request_after_k_steps():
    model = tiny_model()
    first, then = torch.rand(2, 2, 32, generator=torch.Generator().manual_seed(1))
    drawn = {k: photos.generate(model, first, steps=4, seed=3, then=then, switch_after=k) for k in (0, 2, 4)}
    torch.testing.assert_close(drawn[0], photos.generate(model, then, steps=4, seed=3), rtol=0, atol=1e-6)
    torch.testing.assert_close(drawn[4], photos.generate(model, first, steps=4, seed=3), rtol=0, atol=1e-6)
    assert min((drawn[2] - drawn[k]).abs().max() for k in (0, 4)) > 1e-3  # both requests shaped it
    # the model sees the first request for the first k steps, the other after; guidance's NaN rows stay
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(args[2].clone()))
    try:
        photos.generate(model, first, steps=4, seed=3, then=then, switch_after=1)
    finally:
        hook.remove()
    given = [c[torch.isfinite(c).all(1)] for c in seen]
    assert len(seen) == 4 and all(torch.isnan(c).all(1).sum() == 2 for c in seen)  # one guided call per step
    assert torch.equal(given[0], first) and all(torch.equal(g, then) for g in given[1:])
    # one vector for every image
    one = photos.generate(model, first, steps=4, seed=3, then=then[0], switch_after=2)
    torch.testing.assert_close(
        one, photos.generate(model, first, steps=4, seed=3, then=then[[0, 0]], switch_after=2), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(then=torch.rand(2, 32)), "go together"),
        (dict(switch_after=2), "go together"),
        (dict(then=torch.rand(2, 32), switch_after=5), "0..4"),
        (dict(then=torch.rand(2, 32), switch_after=-1), "0..4"),
        (dict(then=torch.rand(2, 32), switch_after=True), "whole number"),
        (dict(then=torch.rand(2, 32), switch_after=1.5), "whole number"),
        (dict(then=torch.rand(3, 32), switch_after=2), "as many feature rows"),
        (dict(then=torch.full((2, 32), float("nan")), switch_after=2), "finite"),
    ],
)
def test_generate_refuses_a_bad_switch_before_any_compute(kw, message):
    model = tiny_model()
    model.forward = None  # any model call would fail with a TypeError, not BadRequest
    with pytest.raises(BadRequest, match=message):
        photos.generate(model, torch.rand(2, 32), steps=4, **kw)


def test_feature_sweep_shares_the_noise_and_moves_only_the_feature():
    model = tiny_model()
    base = torch.full((32,), 0.5)
    row = photos.feature_sweep(model, base, "temperature", values=[0.2, 0.9, 0.2], steps=4, seed=5)
    # same feature value, same noise: the same image, up to the summation order of another batch row
    # (1.6e-6 apart on two threads), the tolerance of the batch-position test above
    torch.testing.assert_close(row[2], row[0], rtol=0, atol=1e-5)
    assert (row[1] - row[0]).abs().max() > 1e-3  # the feature alone changes the image
    asked = base.clone()
    asked[features.index("temperature")] = 0.2
    alone = photos.generate(model, asked, steps=4, seed=5)  # each image is what generate draws alone
    torch.testing.assert_close(row[0], alone[0], rtol=0, atol=1e-5)


def test_measure_fidelity_does_not_depend_on_the_batch():
    model = tiny_model()
    req = torch.rand(4, 32, generator=torch.Generator().manual_seed(1))
    scores, images, measured = photos.measure_fidelity(model, req, batch=4, steps=2, seed=3)
    _, by_three, _ = photos.measure_fidelity(model, req, batch=3, steps=2, seed=3)
    torch.testing.assert_close(by_three, images, rtol=0, atol=1e-5)
    assert measured.shape == (4, 32) and "ALL" in scores
    with pytest.raises(ValueError, match="batch"):
        photos.measure_fidelity(model, req, batch=0, steps=2)


def test_feature_fidelity_perfect_and_baseline():
    g = torch.Generator().manual_seed(0)
    req = torch.rand(50, 32, generator=g)
    perfect = photos.feature_fidelity(req, req)
    assert set(perfect) == {"COLOR", "LIGHTING", "MATERIAL", "SHAPE", "TOPOLOGY", "ALL"}
    for s in perfect.values():
        assert s["mae"] == 0 and s["corr"] == pytest.approx(1.0)
        assert s["mae_shuffled"] > 0.2 and abs(s["corr_shuffled"]) < 0.3  # independent uniforms: ~1/3, ~0
    ignored = photos.feature_fidelity(req, torch.rand(50, 32, generator=g))  # a model that ignores its condition
    assert ignored["ALL"]["mae"] == pytest.approx(ignored["ALL"]["mae_shuffled"], abs=0.05)
    assert "ALL" in photos.format_fidelity(perfect)
    with pytest.raises(ValueError):
        photos.feature_fidelity(req, req[:10])


def test_feature_fidelity_by_feature_adds_up_to_the_groups():
    g = torch.Generator().manual_seed(0)
    req = torch.rand(40, 32, generator=g)
    measured = (req + 0.3 * torch.rand(40, 32, generator=g)).clamp(0, 1)
    measured[:, features.index("num_holes")] = 0.5  # a feature that never varies: no correlation
    groups = photos.feature_fidelity(req, measured)
    rows = photos.feature_fidelity_by_feature(req, measured)
    assert list(rows) == list(features.FEATURE_NAMES)
    assert np.isnan(rows["num_holes"]["corr"])
    for group in features.FEATURE_GROUPS:
        mine = [r for r in rows.values() if r["group"] == group]
        for key in ("mae", "mae_shuffled"):
            assert np.mean([r[key] for r in mine]) == pytest.approx(groups[group][key])
        for key in ("corr", "corr_shuffled"):
            finite = [r[key] for r in mine if np.isfinite(r[key])]
            assert np.mean(finite) == pytest.approx(groups[group][key])
    assert rows["temperature"]["mae"] == pytest.approx((req[:, 4] - measured[:, 4]).abs().mean().item(), rel=1e-5)


def test_hue_errors_go_the_short_way_round():
    req, got = torch.full((4, 32), 0.5), torch.full((4, 32), 0.5)
    hue = features.index("dominant_hue")
    req[:, hue] = torch.tensor([0.97, 0.02, 0.30, 0.50])
    got[:, hue] = torch.tensor([0.02, 0.97, 0.40, 0.50])  # two reds across the ends, one near miss, one hit
    errors = photos.hue_errors(req, got)
    assert errors["mae"] == pytest.approx((0.95 + 0.95 + 0.10 + 0.0) / 4)
    assert errors["circular_mae"] == pytest.approx((0.05 + 0.05 + 0.10 + 0.0) / 4)
    assert errors["share_past_half_a_turn"] == pytest.approx(0.5)
    assert errors["mae"] == pytest.approx(photos.feature_fidelity_by_feature(req, got)["dominant_hue"]["mae"])
    with pytest.raises(ValueError, match="shapes"):
        photos.hue_errors(req, got[:2])


# ---------------------------------------------------------------------------------------------
# Training, resume, checkpoints


def training_record(run_dir):
    from course_utils import checkpoints

    return checkpoints.read_record(checkpoints.last_checkpoint(run_dir))


def _train(ps, run_dir, epochs):
    return photos.train_photo_model(
        ps,
        cfg=TINY,
        epochs=epochs,
        batch_size=4,
        lr=1e-3,
        run_dir=run_dir,
        sample_every=None,
        progress=False,
        augment_with=photos.Augment(),
        seed=0,
    )


def test_training_resumes_exactly_and_checkpoint_checks(photo_folder, tmp_course_dirs, tmp_path):
    ps = photos.load_photos(photo_folder, size=16, progress=False, workers=1)
    straight, result = _train(ps, tmp_path / "a", 2)
    _train(ps, tmp_path / "b", 1)
    resumed, result_b = _train(ps, tmp_path / "b", 2)
    assert result_b.resumed_from == 1 and result.step == result_b.step == 4
    assert result.losses == pytest.approx(result_b.losses, abs=1e-6)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    torch.testing.assert_close(straight.cond_mean, ps.stats()[0])  # statistics saved with the model

    run_recipe = Recipe.from_dict(training_record(tmp_path / "a")["recipe"])  # the run's checkpoints say it too
    assert (run_recipe.name, run_recipe.epochs, run_recipe.lr) == ("photo-16", 2, 1e-3)
    assert run_recipe.extra["world_size"] == 1 and run_recipe.extra["augment"] == dataclasses.asdict(photos.Augment())
    recipe = photos.recipe_of(ps, TINY, epochs=2, lr=1e-3, augment=None)
    path = photos.export(straight, tmp_path / "photo-16.safetensors", result, recipe)
    model, record = photos.load_photo_model(path, image_size=16, device=torch.device("cpu"))
    torch.testing.assert_close(model.cond_std, straight.cond_std, atol=1e-6, rtol=0)  # exact, not float16
    assert model.prediction == "eps"
    assert Recipe.from_dict(record["recipe"]) == recipe
    assert record["recipe"]["extra"]["feature_names"] == list(features.FEATURE_NAMES)
    with pytest.raises(ValueError, match="16x16 images, not 32x32"):
        photos.load_photo_model(path, image_size=32)
    renamed = list(features.FEATURE_NAMES)
    renamed[3] = "colour_count"
    with pytest.raises(ValueError, match="different feature set.*3: color_variety != colour_count"):
        photos.load_photo_model(path, feature_names=renamed)
    with pytest.raises(ValueError, match="different feature set"):
        photos.load_photo_model(path, feature_names=features.FEATURE_NAMES[:16])
    with pytest.raises(ValueError, match="the model is for 32 px"):
        photos.train_photo_model(ps, cfg=UNetConfig.photo_small(32), epochs=1)


def test_recipe_of_fills_the_recipe_and_extra(photo_folder, tmp_course_dirs):
    ps = photos.load_photos(photo_folder, size=16, progress=False, workers=1)
    r = photos.recipe_of(
        ps,
        TINY,
        p_uncond=0.2,
        batch_size=8,
        lr=3e-4,
        ema_decay=0.99,
        seed=5,
        epochs=7,
        augment={"flip": 0.5},
        world_size=2,
    )
    assert isinstance(r, Recipe)
    assert (r.name, r.objective, r.schedule, r.T, r.unet) == ("photo-16", "ddpm", "cosine", 1000, TINY)
    assert (r.p_uncond, r.batch_size, r.lr, r.optimizer) == (0.2, 8, 3e-4, "adamw")
    assert (r.ema_decay, r.seed, r.epochs) == (0.99, 5, 7)
    assert r.prediction == "eps" and r.lr_schedule == "constant"
    assert list(r.extra) == [
        "feature_names",
        "feature_version",
        "feature_mean",
        "feature_std",
        "augment",
        "data",
        "n_photos",
        "world_size",
    ]
    assert r.extra["n_photos"] == 6 and r.extra["augment"] == {"flip": 0.5} and r.extra["world_size"] == 2
    torch.testing.assert_close(torch.tensor(r.extra["feature_mean"]), ps.stats()[0], atol=1e-6, rtol=0)
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r  # through the JSON record and back
    with pytest.raises(ValueError, match="divisible by 16"):
        photos.model_config(24, "full")
    with pytest.raises(ValueError, match="divisible by 4"):
        photos.model_config(18, "small")
    with pytest.raises(ValueError, match="at least 8"):
        photos.model_config(4, "small")


SHIPPED = config.checkpoint_dir() / "photo-32.safetensors"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped photo-32 checkpoint is missing")
def test_shipped_photo_32_record_loads_and_round_trips(tmp_path):
    model, record = photos.load_photo_model(SHIPPED, image_size=32, device=torch.device("cpu"))
    on_disk = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert record == on_disk  # already in the current layout
    r = Recipe.from_dict(record["recipe"])
    assert r.to_dict() == record["recipe"]
    assert (r.name, r.objective, r.schedule, r.T, r.prediction) == ("photo-32", "ddpm", "cosine", 1000, "eps")
    assert (r.epochs, r.batch_size, r.lr, r.ema_decay, r.p_uncond, r.optimizer) == (12, 16, 2e-4, 0.998, 0.1, "adamw")
    assert r.unet == model.cfg == UNetConfig.photo_small(32) and r.sha256 == record["sha256"] == sha256_file(SHIPPED)
    assert r.extra["feature_names"] == list(features.FEATURE_NAMES) and r.extra["n_photos"] == 3670
    torch.testing.assert_close(model.cond_mean, torch.tensor(r.extra["feature_mean"]))
    torch.testing.assert_close(model.cond_std, torch.tensor(r.extra["feature_std"]))
    assert model.prediction == "eps" and len(record["epoch_losses"]) == record["epochs"] == 12

    # the older flat layout (a student's own checkpoint from before) still loads, as the same model
    flat = dict(on_disk)
    flat["recipe"] = dict(
        r.extra,
        image_size=32,
        objective="ddpm",
        schedule="cosine",
        T=1000,
        p_uncond=0.1,
    )
    shutil.copy(SHIPPED, tmp_path / "old.safetensors")
    (tmp_path / "old.json").write_text(json.dumps(flat))
    old, old_record = photos.load_photo_model(tmp_path / "old.safetensors", image_size=32, device=torch.device("cpu"))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(old.state_dict()[name], value, rtol=0, atol=0, msg=name)
    converted = Recipe.from_dict(old_record["recipe"])
    assert converted.extra == r.extra and converted.unet == r.unet and converted.epochs == 12
    assert "not recorded" in converted.trained
    with pytest.raises(ValueError, match="32x32 images, not 64x64"):
        photos.load_photo_model(tmp_path / "old.safetensors", image_size=64)
    flat["recipe"]["feature_names"] = list(reversed(features.FEATURE_NAMES))
    (tmp_path / "old.json").write_text(json.dumps(flat))
    with pytest.raises(ValueError, match="different feature set"):
        photos.load_photo_model(tmp_path / "old.safetensors")


# ---------------------------------------------------------------------------------------------
# The slider explorer


def test_feature_explorer_callback_runs_without_a_browser():
    calls = []

    def fake_generate(f):
        calls.append(f.clone())
        return torch.zeros(3, 8, 8) + 2 * f[0] - 1

    ui = widgets.feature_explorer(fake_generate, torch.full((32,), 0.5), measure=lambda img: torch.full((32,), 0.25))
    assert len(ui.sliders) == 32 and ui.sliders["circularity"].continuous_update is False
    assert len(ui.children[0].children) == 5  # one accordion page per group
    ui.sliders["dominant_hue"].value = 0.9  # what releasing the slider does
    assert ui.state["features"][0].item() == pytest.approx(0.9)
    assert ui.state["image"].mean().item() == pytest.approx(0.8)
    torch.testing.assert_close(ui.state["measured"], torch.full((32,), 0.25))
    ui.sliders["circularity"].value = 0.1
    assert calls[-1][features.index("circularity")].item() == pytest.approx(0.1)
    assert calls[-1][0].item() == pytest.approx(0.9)  # the other sliders keep their values
    fig = widgets.feature_explorer(fake_generate, [0.5] * 32, static=True)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError):
        widgets.feature_explorer(fake_generate, [0.5] * 31)


def test_command_line_trains_exports_and_scores(photo_folder, tmp_course_dirs, tmp_path, capsys):
    from course_utils.__main__ import main

    out = tmp_path / "cli" / "photo-16.safetensors"
    argv = [
        "train",
        "photo",
        "--data",
        str(photo_folder),
        "--size",
        "16",
        "--model",
        "small",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--sample-every",
        "1",
        "--fidelity",
        "2",
        "--run-dir",
        str(tmp_path / "cli-run"),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "6 photos at 16 px" in printed and "img/s" in printed and "TOPOLOGY" in printed
    model, record = photos.load_photo_model(out, image_size=16)
    r = Recipe.from_dict(record["recipe"])
    assert r.extra["n_photos"] == 6 and model.cfg.image_size == 16
    assert (r.name, r.epochs, r.batch_size, r.ema_decay) == ("photo-16", 1, 4, 0.999)
    assert set(json.loads((tmp_path / "cli-run" / "fidelity.json").read_text())) >= {"COLOR", "ALL"}
    assert (tmp_path / "cli-run" / "samples_epoch_0001.png").is_file()  # photos saves the grid, not the loop
