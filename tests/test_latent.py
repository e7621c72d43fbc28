"""The latent photo model: the held-out split, the autoencoder, the latent cache, the latent UNet and
its decoding, on small synthetic photos (the shipped pair is tested in test_shipped_latent.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from course_utils import autoencoder, features, latent, photos
from course_utils.errors import BadRequest

TINY_AE = autoencoder.AEConfig(factor=4, latent_channels=4, width=16, blocks=1, refine=8)


def synthetic_photos(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, size, size): smooth colour blobs, different per image."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).round().byte()


# -- split ---------------------------------------------------------------------------------------


def test_split_is_a_tenth_fixed_by_name_and_independent_of_order():
    names = [Path(f"flowers/class{i % 5}/photo_{i}.jpg") for i in range(2000)]
    train, held = latent.split_indices(names, Path("flowers"))
    assert len(train) + len(held) == 2000 and set(train.tolist()).isdisjoint(held.tolist())
    assert 0.08 < len(held) / 2000 < 0.12
    held_names = {names[i] for i in held.tolist()}
    reversed_names = names[::-1]
    _, held_rev = latent.split_indices(reversed_names, Path("flowers"))
    assert {reversed_names[i] for i in held_rev.tolist()} == held_names  # order does not matter
    _, held_part = latent.split_indices(names[:500], Path("flowers"))  # nor which other photos exist
    assert {names[i] for i in held_part.tolist()} == {n for n in held_names if n in set(names[:500])}
    _, held_other = latent.split_indices(names, Path("flowers"), seed=1)
    assert {names[i] for i in held_other.tolist()} != held_names


def test_split_refuses_a_bad_fraction():
    with pytest.raises(BadRequest, match="fraction"):
        latent.is_held_out("a.jpg", fraction=1.5)


# -- autoencoder ---------------------------------------------------------------------------------


def test_autoencoder_shapes_standardisation_and_refusals():
    torch.manual_seed(0)
    ae = autoencoder.Autoencoder(TINY_AE).eval()
    x = synthetic_photos(4).float() / 127.5 - 1
    z = ae.encode(x)
    assert z.shape == (4, 4, 8, 8)
    shift, scale = autoencoder.measure_latent_stats(ae, synthetic_photos(4))  # uint8 accepted
    z = ae.encode(x)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3)
    raw_mean, _ = ae.moments(x)
    assert torch.allclose(ae.decode(z), ae.decode_raw(raw_mean).clamp(-1, 1), atol=1e-5)  # decode undoes it
    with pytest.raises(BadRequest, match="multiples of 4"):
        ae.encode(torch.zeros(1, 3, 30, 30))
    with pytest.raises(BadRequest, match="latents are"):
        ae.decode(torch.zeros(1, 3, 8, 8))
    assert TINY_AE.compression() == 3 * 16 / 4


def test_kl_is_zero_for_the_prior_and_positive_otherwise():
    zero = torch.zeros(2, 3, 4, 4)
    assert autoencoder.kl_divergence(zero, zero).item() == pytest.approx(0.0)
    assert autoencoder.kl_divergence(zero + 1, zero).item() == pytest.approx(0.5)
    assert autoencoder.kl_divergence(zero, zero + 1).item() == pytest.approx(0.5 * (torch.e - 2), rel=1e-5)


def test_gradient_term_sees_an_edge_that_l1_alone_scores_the_same():
    flat = torch.zeros(1, 3, 8, 8)
    edge = flat.clone()
    edge[..., 4:] = 1.0
    gx, gy = autoencoder.image_gradients(edge)
    assert gx.abs().sum() > 0 and gy.abs().sum() == 0


def test_crop_batches_repeat_per_epoch_and_resume(tmp_path):
    imgs = synthetic_photos(10, 32)
    a = latent.CropBatches(imgs, 4, crop=16, seed=3)
    first, second = [b.clone() for b in a], [b.clone() for b in a]
    assert [b.shape for b in first] == [(4, 3, 16, 16), (4, 3, 16, 16), (2, 3, 16, 16)]
    b = latent.CropBatches(imgs, 4, crop=16, seed=3)
    b.set_epoch(1)
    assert all(torch.equal(x, y) for x, y in zip(second, b))  # epoch 1 again, as a resumed run sees it
    assert not all(torch.equal(x, y) for x, y in zip(first, second))
    with pytest.raises(BadRequest, match="crop"):
        latent.CropBatches(imgs, 4, crop=64)
    with pytest.raises(BadRequest, match="uint8"):
        latent.CropBatches(imgs.float(), 4)


def test_autoencoder_training_lowers_the_loss_and_resumes(tmp_path):
    imgs = synthetic_photos(16, 32)
    ae, result = latent.train_autoencoder(
        imgs, cfg=TINY_AE, run_dir=tmp_path / "ae", epochs=3, batch_size=8, crop=16, lr=3e-3, progress=False
    )
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    again, resumed = latent.train_autoencoder(
        imgs, cfg=TINY_AE, run_dir=tmp_path / "ae", epochs=3, batch_size=8, crop=16, lr=3e-3, progress=False
    )
    assert resumed.epoch == 3 and resumed.step == result.step  # nothing left to do: read back, not retrained
    assert all(torch.equal(p, q) for p, q in zip(ae.state_dict().values(), again.state_dict().values()))


# -- latent cache --------------------------------------------------------------------------------


def test_variants_and_their_features():
    img = synthetic_photos(1, 32)[0]
    v0, v1 = latent.variant_pixels(img, 0, "k"), latent.variant_pixels(img, 1, "k")
    assert torch.equal(v1, v0.flip(-1))
    v2a, v2b = latent.variant_pixels(img, 2, "k"), latent.variant_pixels(img, 2, "k")
    assert torch.equal(v2a, v2b) and not torch.equal(v2a, v0)
    assert not torch.equal(latent.variant_pixels(img, 2, "other"), v2a)


def test_crop_variants_zoom_into_the_photo():
    W = 64
    ramp = torch.linspace(0, 255, W).round().to(torch.uint8).expand(3, W, W).clone()  # brightness grows left to right
    lo, hi = latent.CROP_SIDE
    crops = [latent.variant_pixels(ramp, v, "k") for v in range(latent.CROP_FROM, latent.CROP_FROM + 4)]
    for crop in crops:
        assert crop.shape == (3, W, W) and 0 <= crop.min() and crop.max() <= 1
        span = crop[0, W // 2, 2:-2].max() - crop[0, W // 2, 2:-2].min()  # a zoomed crop shows part of the ramp
        assert lo - 0.1 < span < hi + 0.02, span
    assert torch.equal(crops[0], latent.variant_pixels(ramp, latent.CROP_FROM, "k"))  # drawn from the key alone
    assert not torch.equal(crops[0], crops[1])


def test_latent_cache_is_reused_and_keyed_by_content_and_autoencoder(tmp_path):
    torch.manual_seed(0)
    ae = autoencoder.Autoencoder(TINY_AE).eval()
    imgs = synthetic_photos(5, 32)
    folder = tmp_path / "latents"
    cache = latent.latent_cache(ae, imgs, variants=3, folder=folder, chunk=2, progress=False)
    assert len(cache) == 15 and cache.latents.shape == (15, 4, 8, 8) and cache.latents.dtype == torch.float16
    files = sorted(folder.glob("*.safetensors"))
    assert len(files) == 3  # chunks of 2, 2 and 1 photos
    # every row's features are those of its own variant's pixels
    for row in (0, 7, 14):
        p, v = int(cache.photo[row]), int(cache.variant[row])
        import hashlib

        key = hashlib.sha256(imgs[p].numpy().tobytes()).hexdigest()
        pixels = latent.variant_pixels(imgs[p], v, key) * 2 - 1
        assert torch.allclose(cache.features[row], features.extract_batch(pixels[None])[0], atol=1e-6)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = latent.latent_cache(ae, imgs, variants=3, folder=folder, chunk=2, progress=False)
    assert torch.equal(again.latents, cache.latents) and {f: f.stat().st_mtime_ns for f in files} == stamps
    changed = imgs.clone()
    changed[4] = 255 - changed[4]  # one photo changed: only its chunk is made again
    latent.latent_cache(ae, changed, variants=3, folder=folder, chunk=2, progress=False)
    assert len(list(folder.glob("*.safetensors"))) == 4
    with torch.no_grad():
        ae.decoder[0].weight.add_(0.1)  # another autoencoder: new chunks
    latent.latent_cache(ae, imgs, variants=3, folder=folder, chunk=2, progress=False)
    assert len(list(folder.glob("*.safetensors"))) == 7


# -- the latent model ----------------------------------------------------------------------------


def test_latent_model_trains_and_draws_decoded_photos(tmp_path):
    torch.manual_seed(0)
    ae = autoencoder.Autoencoder(TINY_AE).eval()
    imgs = synthetic_photos(8, 32)
    autoencoder.measure_latent_stats(ae, imgs)
    cache = latent.latent_cache(ae, imgs, variants=2, folder=tmp_path / "lat", progress=False)
    cfg = latent.latent_model_config(4, 8, base_channels=8, attn_resolutions=(2,))
    unet, result, recipe = latent.train_latent_model(
        cache, cfg=cfg, run_dir=tmp_path / "run", epochs=1, batch_size=8, progress=False
    )
    assert recipe.extra["latents"] == 16 and recipe.unet.in_channels == 4
    model = latent.LatentDiffusion(unet, ae)
    assert model.image_size == 32 and torch.equal(model.cond_mean, unet.cond_mean)
    x = photos.generate(model, cache.features[:3], steps=3, seed=0)
    assert x.shape == (3, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    alone = photos.generate(model, cache.features[1:2], steps=3, generator=None, seed=0)
    assert alone.shape == (1, 3, 32, 32)
    with pytest.raises(BadRequest, match="noise must have shape"):
        photos.generate(model, cache.features[:1], steps=3, noise=torch.zeros(1, 3, 32, 32))


def test_both_halves_train_on_the_course_device(tmp_path, monkeypatch):
    """Without ``device`` both trainings ask :func:`config.device` (a GPU when there is one); an
    explicit device is used without asking; the photos and cached latents stay on the CPU."""
    from course_utils import config

    asked = []

    def device(prefer=None):
        asked.append(prefer)
        return torch.device("cpu")

    monkeypatch.setattr(config, "device", device)
    imgs = synthetic_photos(8, 32)
    ae, _ = latent.train_autoencoder(imgs, cfg=TINY_AE, epochs=1, batch_size=8, crop=16, progress=False)
    assert asked and ae.latent_scale.device.type == "cpu"
    autoencoder.measure_latent_stats(ae, imgs)
    cache = latent.latent_cache(ae, imgs, variants=1, folder=tmp_path / "lat", progress=False)
    asked.clear()
    cfg = latent.latent_model_config(4, 8, base_channels=8, attn_resolutions=(2,))
    unet, result, _ = latent.train_latent_model(cache, cfg=cfg, epochs=1, batch_size=8, progress=False)
    assert asked and next(unet.parameters()).device.type == "cpu" and cache.latents.device.type == "cpu"
    # an explicit device is used as given, without asking
    asked.clear()
    latent.train_latent_model(cache, cfg=cfg, epochs=1, batch_size=8, progress=False, device=torch.device("cpu"))
    assert not asked


def test_bicubic_baseline_keeps_a_flat_image_and_blurs_detail():
    flat = torch.full((1, 3, 64, 64), 200, dtype=torch.uint8)
    assert torch.allclose(latent.bicubic_from(flat), torch.full((1, 3, 64, 64), 200 / 127.5 - 1), atol=1e-5)
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2 * 255).byte().expand(1, 3, 64, 64)
    assert latent.bicubic_from(checker).std() < 0.05  # a one-pixel checkerboard averages away at 32 px


def test_reconstruct_and_scores_on_tiny_photos():
    torch.manual_seed(0)
    ae = autoencoder.Autoencoder(TINY_AE).eval()
    imgs = synthetic_photos(4, 32)
    autoencoder.pca_init(ae, imgs)
    rec = latent.reconstruct(ae, imgs, batch=3)
    assert rec.shape == (4, 3, 32, 32) and rec.abs().max() <= 1
    scores = latent.autoencoder_scores(ae, imgs, features.extract_batch(imgs.float() / 127.5 - 1))
    assert scores["photos"] == 4 and scores["psnr"] > 20  # smooth blobs: PCA alone reconstructs them well
    groups = {*features.FEATURE_GROUPS, "ALL"}
    for name in ("feature_mae", "feature_corr", "feature_mae_bicubic_from_32", "feature_corr_bicubic_from_32"):
        assert set(scores[name]) == groups, name
    assert all(v >= 0 for v in scores["feature_mae"].values())
    assert all(-1 <= v <= 1 for v in scores["feature_corr"].values())


def test_pca_init_is_the_best_linear_code():
    imgs = synthetic_photos(8, 32)
    ae = autoencoder.Autoencoder(TINY_AE).eval()
    share = autoencoder.pca_init(ae, imgs)
    assert share.shape == (4,) and torch.all(share[:-1] >= share[1:]) and share.sum() <= 1
    x = imgs.float() / 127.5 - 1
    patches = torch.nn.functional.pixel_unshuffle(x, 4).transpose(0, 1).reshape(48, -1)
    mean = patches.mean(1, keepdim=True)
    _, _, v = torch.linalg.svd((patches - mean).T, full_matrices=False)
    basis = v[:4].T  # the top principal directions
    expected = basis @ (basis.T @ (patches - mean)) + mean
    got = torch.nn.functional.pixel_unshuffle(ae.decode_raw(ae.moments(x)[0]), 4).transpose(0, 1).reshape(48, -1)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_train_command_refuses_an_unwritable_place_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as stop:
        latent.train_main("photo-ae", ["--out", str(blocker / "x.safetensors")])
    assert stop.value.code == 2 and "cannot write there" in capsys.readouterr().err


def test_only_the_latent_train_command_takes_variants_simple_loss_and_seed(tmp_path, monkeypatch, capsys):
    asked = {}
    monkeypatch.setattr(latent, "build_latent_model", lambda **kw: asked.update(kw) or tmp_path / "m.safetensors")
    assert latent.train_main("photo-latent", ["--variants", "8", "--epochs", "4", "--no-progress"]) == 0
    assert asked["variants"] == 8 and asked["epochs"] == 4
    assert asked["snr_gamma"] == latent.LATENT_SNR_GAMMA  # the recipe's loss weighting
    assert latent.train_main("photo-latent", ["--no-progress"]) == 0 and asked["variants"] is None  # the recipe's
    assert asked["seed"] is None  # the recipe's
    assert latent.train_main("photo-latent", ["--simple-loss", "--no-progress"]) == 0 and asked["snr_gamma"] is None
    assert latent.train_main("photo-latent", ["--seed", "1", "--no-progress"]) == 0 and asked["seed"] == 1
    for name, argv in (
        ("photo-latent", ["--variants", "0"]),
        ("photo-latent", ["--seed", "-1"]),
        ("photo-ae", ["--variants", "8"]),
        ("photo-ae", ["--simple-loss"]),
        ("photo-ae", ["--seed", "1"]),
    ):
        with pytest.raises(SystemExit) as stop:
            latent.train_main(name, argv)
        assert stop.value.code == 2
    assert "--variants" in capsys.readouterr().err


def test_the_two_build_commands_export_records_that_load_together(tmp_path, monkeypatch, tmp_course_dirs):
    from course_utils import checkpoints, photo_data

    imgs = synthetic_photos(12, 32)
    feats = features.extract_batch(imgs.float() / 127.5 - 1)
    fake = photo_data.PhotoSet(imgs, feats, [Path(f"p{i}.jpg") for i in range(12)], [], Path("."))
    monkeypatch.setattr(latent, "_photos_and_split", lambda progress: (fake, torch.arange(10), torch.arange(10, 12)))
    monkeypatch.setattr(latent, "AE_CONFIG", TINY_AE)
    monkeypatch.setattr(latent, "AE_SETTINGS", dict(epochs=1, batch_size=4, crop=16))
    monkeypatch.setattr(latent, "LATENT_SETTINGS", dict(epochs=1, batch_size=8))
    monkeypatch.setattr(latent, "LATENT_WIDTH", 8)
    ae_path = latent.build_autoencoder(out=tmp_path / "photo-ae.safetensors", run_dir=tmp_path / "ae", progress=False)
    record = checkpoints.read_record(ae_path)
    assert record["split"] == dict(fraction=0.1, seed=0, train=10, held_out=2)
    assert record["scores"]["photos"] == 2 and "s of training on" in record["recipe"]["trained"]
    variants = latent.CROP_FROM + 1  # the shipped four and one zoomed crop (train photo-latent --variants 5)
    lat_path = latent.build_latent_model(
        out=tmp_path / "photo-latent.safetensors",
        run_dir=tmp_path / "lat",
        variants=variants,
        autoencoder=ae_path,
        progress=False,
        snr_gamma=5.0,  # benchmarks/latent_min_snr.py's loss weighting, kept in the record
        hue_as_angle=True,  # benchmarks/latent_hue_angle.py's condition, kept in the model's config
        scale_shift=True,  # benchmarks/latent_scale_shift.py's adaptive GroupNorm, kept in the model's config
        seed=3,  # benchmarks/latent_training_seed.py's other run of the recipe, kept in the recipe
    )
    model, lat_record = latent.load_latent_model(lat_path, autoencoder=ae_path)
    extra = lat_record["recipe"]["extra"]
    assert extra["snr_gamma"] == 5.0 and lat_record["recipe"]["seed"] == 3
    assert (
        model.unet.cfg.cond_angles
        == (features.index("dominant_hue"),)
        == tuple(lat_record["model_config"]["cond_angles"])
    )
    assert model.unet.cfg.scale_shift and lat_record["model_config"]["scale_shift"] is True
    assert extra["autoencoder_sha256"] == record["sha256"] and extra["x0_clip"] == latent.X0_CLIP
    assert extra["latents"] == 10 * variants == 10 * extra["variants"] and model.x0_clip == latent.X0_CLIP
    assert f"({variants} variants of 10 photos" in lat_record["recipe"]["trained"]
    assert photos.generate(model, feats[:1], steps=2).shape == (1, 3, 32, 32)


def test_the_w3_trial_reader_refuses_missing_runs_before_any_compute(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("COURSE_HOME", str(tmp_path))  # no runs/ there
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import latent_trials_w3

    monkeypatch.setattr(latent_trials_w3.photo_data, "load_photos", lambda **kw: pytest.fail("loaded photos"))
    monkeypatch.setattr(sys, "argv", ["latent_trials_w3.py", "--out", str(tmp_path / "out.json")])
    with pytest.raises(SystemExit, match="runs/photo-latent-seed1.*runs/photo-latent-hue-angle"):
        latent_trials_w3.main()
    assert not (tmp_path / "out.json").exists()
