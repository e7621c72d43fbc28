"""The 32 features on images whose answers are known: shapes, pure colours, flips, odd inputs."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage.measure import euler_number

from course_utils import features as F

N = 128


def _grid(n=N):
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    return yy - (n - 1) / 2, xx - (n - 1) / 2


def disk(r=40, cy=0.0, cx=0.0):
    y, x = _grid()
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def annulus(r_in=20, r_out=45):
    y, x = _grid()
    d = x**2 + y**2
    return (d <= r_out**2) & (d > r_in**2)


def ellipse(a=55, b=20, angle=0.5):
    y, x = _grid()
    u, v = np.cos(angle) * x + np.sin(angle) * y, -np.sin(angle) * x + np.cos(angle) * y
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def square(half=35):
    y, x = _grid()
    return (np.abs(x) <= half) & (np.abs(y) <= half)


def figure_eight():
    """A bar with two round holes: one component, two holes."""
    y, x = _grid()
    bar = (np.abs(x) <= 55) & (np.abs(y) <= 30)
    return bar & ((x + 25) ** 2 + y**2 > 15**2) & ((x - 25) ** 2 + y**2 > 15**2)


def paint(mask, fg=(0.9, 0.2, 0.1), bg=(0.1, 0.1, 0.8)):
    """An RGB float image: ``fg`` colour on the mask, ``bg`` elsewhere."""
    return np.where(mask[..., None], np.float32(fg), np.float32(bg)).astype(np.float32)


def photo_like(seed=0):
    """A smooth coloured blob with shading and grain on a gradient background, as uint8."""
    rng = np.random.default_rng(seed)
    y, x = _grid()
    img = np.stack([0.3 + 0.2 * (x / N), 0.5 + 0.1 * (y / N), 0.7 - 0.2 * (x / N)], axis=-1)
    blob = ellipse(45, 30, 0.3) & ~disk(8, 5, 10)
    shade = 0.6 + 0.4 * np.exp(-((x - 10) ** 2 + (y + 10) ** 2) / 600)
    img[blob] = np.stack([0.9 * shade, 0.5 * shade, 0.2 * shade], axis=-1)[blob]
    img = img + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def feature(vec, name):
    return float(vec[F.index(name)])


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# --- the table -------------------------------------------------------------------------------


def test_names_groups_and_order_match_the_design():
    assert F.NUM_FEATURES == 32 == len(F.FEATURE_NAMES) == len(set(F.FEATURE_NAMES))
    assert list(F.FEATURE_GROUPS) == ["COLOR", "LIGHTING", "MATERIAL", "SHAPE", "TOPOLOGY"]
    assert F.FEATURE_GROUPS["COLOR"][0] == "dominant_hue" and F.FEATURE_GROUPS["TOPOLOGY"][-1] == "betti_1"
    assert sum(F.FEATURE_GROUPS.values(), []) == list(F.FEATURE_NAMES)
    assert F.FEATURE_NAMES[19] == "circularity" and F.index("euler_char") == 26
    for info in F.FEATURES:
        assert info.name in F.__doc__ and info.meaning  # every feature has its formula documented


# --- topology: the raw numbers, then the normalised features -----------------------------------


@pytest.mark.parametrize(
    "mask, components, holes, euler",
    [
        (disk(), 1, 0, 1),
        (annulus(), 1, 1, 0),
        (figure_eight(), 1, 2, -1),
        (disk(15, 0, -35) | disk(15, 0, 35), 2, 0, 2),
        (annulus() | disk(8), 2, 1, 1),  # a dot inside the ring's hole
    ],
    ids=["disk", "annulus", "figure-eight", "two-disks", "ring-and-dot"],
)
def test_topology_of_known_masks(mask, components, holes, euler):
    t = F.topology(mask)
    assert (t.components, t.holes, t.euler, t.betti_0, t.betti_1) == (components, holes, euler, components, holes)
    assert t.euler == euler_number(mask, connectivity=2)  # agrees with scikit-image's count


def test_genus_counts_the_main_objects_holes_only():
    ring_and_small_ring = annulus(20, 45) | (disk(12, 50, 50) & ~disk(5, 50, 50))
    t = F.topology(ring_and_small_ring)
    assert (t.components, t.holes, t.genus) == (2, 2, 1)
    assert F.topology(figure_eight()).genus == 2


def test_pin_holes_below_the_threshold_are_ignored():
    pinhole = disk() & ~disk(1)  # a 5-pixel hole
    assert F.topology(pinhole).holes == 0 and F.topology(pinhole, min_hole=1).holes == 1
    assert F.topology(np.zeros((N, N), bool)) == F.Topology(0, 0, 0)


def test_object_mask_recovers_drawn_shapes():
    for mask in (disk(), annulus(), figure_eight()):
        found, method = F.object_mask(paint(mask))
        assert method == "border colour" and np.mean(found == mask) > 0.995
    found, method = F.object_mask(np.full((N, N, 3), 0.5, np.float32))
    assert method == "none" and not found.any()


def test_topology_features_disk_annulus_figure_eight():
    d, a, e = (F.extract_features(paint(m)) for m in (disk(), annulus(), figure_eight()))
    assert feature(d, "euler_char") == pytest.approx(sigmoid(1), abs=1e-6)
    assert feature(a, "euler_char") == pytest.approx(0.5, abs=1e-6)
    assert feature(e, "euler_char") == pytest.approx(sigmoid(-1), abs=1e-6)
    for vec, holes in ((d, 0), (a, 1), (e, 2)):
        for name in ("num_holes", "betti_1", "genus"):
            assert feature(vec, name) == pytest.approx(holes / (holes + 2), abs=1e-6), name
    assert feature(d, "complexity") == 0.0 and feature(a, "complexity") == 0.0  # one skeleton branch
    assert feature(e, "complexity") > 0.0


def test_skeleton_of_disk_and_ring_has_one_branch():
    assert F.skeleton_branches(disk())[1] == 1
    skel, branches = F.skeleton_branches(annulus())
    assert branches == 1 and F.topology(skel).holes == 1  # the skeleton keeps the hole


# --- shape ------------------------------------------------------------------------------------


def test_exact_outlines_circle_and_ellipse():
    t = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    circle = F.outline_measures(np.fft.fft(30 * np.exp(1j * t)))
    assert circle["circularity"] == pytest.approx(1.0, abs=1e-9)
    assert circle["mean_k"] == pytest.approx(1.0, abs=1e-9) and circle["std_k"] == pytest.approx(0.0, abs=1e-9)
    assert circle["area"] == pytest.approx(np.pi * 900, rel=1e-9)
    ell = F.outline_measures(np.fft.fft(50 * np.cos(t) + 20j * np.sin(t)))
    assert ell["mean_k"] == pytest.approx(np.sqrt(ell["circularity"]), rel=1e-6)  # total curvature 2 pi


def test_circularity_solidity_and_curvature_of_drawn_shapes():
    d, a, sq = (F.extract_features(paint(m)) for m in (disk(), annulus(), square()))
    assert feature(d, "circularity") > 0.97 and feature(d, "solidity") > 0.97
    assert feature(a, "circularity") > 0.97  # the outer outline is round ...
    assert feature(a, "solidity") == pytest.approx(1 - (20 / 45) ** 2, abs=0.03)  # ... with a hole
    assert feature(d, "mean_curvature") == pytest.approx(0.5, abs=0.01)
    assert feature(d, "curv_variance") < 0.1 < 0.5 < feature(sq, "curv_variance")
    assert feature(sq, "circularity") < 0.9


def test_affine_curvature_is_zero_for_every_ellipse():
    for mask in (disk(), ellipse(55, 20, 0.5), ellipse(30, 12, 1.1)):
        assert feature(F.extract_features(paint(mask)), "affine_curvature") < 0.01
    assert F.affine_ellipse_ratio(square()) == pytest.approx(16 * np.pi**2 / 144, rel=0.01)
    assert feature(F.extract_features(paint(square())), "affine_curvature") > 0.2


def test_cell_graph_density_and_spectral_gap():
    full = F.cell_graph(np.ones((32, 32), bool), cells=4)
    assert full.shape == (16, 16) and full.sum() == 2 * 24  # a 4x4 grid has 24 edges
    density, gap = F.graph_stats(full)
    assert density == pytest.approx(24 / 16 / 2)
    apart = F.graph_stats(F.cell_graph(disk(15, 0, -35) | disk(15, 0, 35)))
    assert apart[1] == 0.0  # two pieces: lambda_2 = 0
    y, x = _grid()
    dumbbell = disk(25, 0, -35) | disk(25, 0, 35) | ((np.abs(y) <= 8) & (np.abs(x) <= 35))  # a neck one cell wide
    assert 0 < F.graph_stats(F.cell_graph(dumbbell))[1] < F.graph_stats(F.cell_graph(disk()))[1]


# --- colour and light -------------------------------------------------------------------------


def test_pure_red_is_red_and_warm_pure_blue_is_blue_and_cool():
    red = F.extract_features(np.tile(np.float32([1, 0, 0]), (32, 32, 1)))
    blue = F.extract_features(np.tile(np.float32([0, 0, 1]), (32, 32, 1)))
    hue = feature(red, "dominant_hue")
    assert min(hue, 1 - hue) < 0.01
    assert feature(blue, "dominant_hue") == pytest.approx(2 / 3, abs=0.01)
    assert feature(red, "temperature") == 1.0 and feature(blue, "temperature") == 0.0
    for vec in (red, blue):
        assert feature(vec, "dominant_sat") == pytest.approx(1.0) and feature(vec, "high_sat_ratio") == 1.0


def test_uniform_gray_has_no_saturation_contrast_or_variety():
    vec = F.extract_features(np.full((64, 48, 3), 0.5, np.float32))
    for name in (
        "dominant_sat",
        "sat_variation",
        "color_contrast",
        "color_variety",
        "high_sat_ratio",
        "brightness_var",
        "local_contrast",
        "shadow_intensity",
        "shadow_ratio",
        "spectral_entropy",
        "circularity",
        "num_holes",
    ):
        assert feature(vec, name) == pytest.approx(0.0, abs=1e-3), name  # float32 Lab round-off
    assert feature(vec, "temperature") == pytest.approx(0.5, abs=1e-6)
    assert feature(vec, "dominant_val") == pytest.approx(0.5, abs=1e-6)
    assert feature(vec, "color_uniformity") == pytest.approx(1.0, abs=1e-6)


def test_half_black_half_white_has_full_contrast():
    img = np.zeros((N, N, 3), np.float32)  # at the working size: no resampling blur
    img[:, N // 2 :] = 1.0
    vec = F.extract_features(img)
    assert feature(vec, "brightness_var") == pytest.approx(1.0, abs=1e-6)
    assert feature(vec, "color_contrast") == pytest.approx(1.0)
    assert feature(vec, "color_variety") == pytest.approx(np.log(2) / np.log(64), abs=1e-6)
    assert feature(vec, "shadow_ratio") == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize(
    "transform", [np.rot90, np.fliplr, np.flipud, lambda a: np.rot90(a, 2)], ids=["rot90", "fliplr", "flipud", "rot180"]
)
def test_rotations_and_flips_change_no_colour_feature(transform):
    img = photo_like(1)
    before, after = F.extract_features(img), F.extract_features(np.ascontiguousarray(transform(img)))
    colour = [F.index(n) for n in F.FEATURE_GROUPS["COLOR"]]
    np.testing.assert_allclose(after[colour], before[colour], atol=1e-5)
    topo = [F.index(n) for n in ("euler_char", "num_holes", "betti_1", "genus")]
    np.testing.assert_array_equal(after[topo], before[topo])


# --- every input a student may have -----------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(4, 48),
    w=st.integers(4, 48),
    channels=st.sampled_from([0, 1, 3, 4]),
    kind=st.sampled_from(["noise", "blocks", "constant"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_feature_stays_in_the_unit_interval(h, w, channels, kind, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 0 else (h, w, channels)
    if kind == "noise":
        img = rng.random(shape, dtype=np.float32)
    elif kind == "blocks":
        small = rng.random((2, 2) + shape[2:], dtype=np.float32)
        img = np.repeat(np.repeat(small, (h + 1) // 2, 0), (w + 1) // 2, 1)[:h, :w].astype(np.float32)
    else:
        img = np.full(shape, rng.random(), np.float32)
    vec = F.extract_features(img)
    assert vec.shape == (32,) and vec.dtype == np.float32
    assert np.all(np.isfinite(vec)) and vec.min() >= 0.0 and vec.max() <= 1.0


def test_input_types_give_the_same_features():
    img8 = photo_like(2)
    ref = F.extract_features(img8)
    as_float = img8.astype(np.float32) / 255
    variants = {
        "float": as_float,
        "float64": as_float.astype(np.float64),
        "uint16": img8.astype(np.uint16) * 257,
        "rgba": np.concatenate([img8, np.full(img8.shape[:2] + (1,), 255, np.uint8)], axis=2),
        "chw tensor [-1, 1]": torch.from_numpy(as_float).permute(2, 0, 1) * 2 - 1,
        "bchw tensor [0, 1]": torch.from_numpy(as_float).permute(2, 0, 1)[None],
        "chw array": as_float.transpose(2, 0, 1),
    }
    for name, img in variants.items():
        np.testing.assert_allclose(F.extract_features(img), ref, atol=2e-3, err_msg=name)
    gray8 = img8[..., 1]
    gray_ref = F.extract_features(np.repeat(gray8[..., None], 3, axis=2))
    for img in (gray8, gray8[..., None], gray8.astype(np.float32) / 255, torch.from_numpy(gray8)[None]):
        np.testing.assert_allclose(F.extract_features(img), gray_ref, atol=2e-3)


def test_alpha_is_composited_on_white_and_size_does_not_matter():
    rgba = np.zeros((16, 16, 4), np.float32)  # fully transparent
    np.testing.assert_allclose(F.to_rgb(rgba), 1.0)
    big = np.kron(photo_like(3), np.ones((2, 2, 1), np.uint8))  # the same picture at 256x256
    small, large = F.extract_features(photo_like(3)), F.extract_features(big)
    colour = [F.index(n) for n in F.FEATURE_GROUPS["COLOR"]]
    np.testing.assert_allclose(large[colour], small[colour], atol=1e-4)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 5, 3)), "empty"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((1, 1, 3)), "at least"),
        (np.zeros((1, 100)), "at least"),
        (np.full((8, 8, 3), 2.0, np.float32), "value_range"),
        (np.zeros((8, 8, 5)), "RGB"),
        (np.zeros((2, 3, 8, 8)), "RGB"),
        (np.array([["a"] * 8] * 8), "dtype"),
    ],
    ids=["empty", "nan", "one-pixel", "one-row", "out-of-range", "five-channels", "batch", "strings"],
)
def test_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        F.extract_features(bad)


def test_value_range_reads_other_scales():
    img = photo_like(4).astype(np.float32)  # 0-255 floats
    np.testing.assert_allclose(
        F.extract_features(img, value_range=(0, 255)), F.extract_features(photo_like(4)), atol=1e-5
    )


def test_extract_batch_matches_one_by_one_and_clamps():
    x = torch.stack([torch.from_numpy(photo_like(s).astype(np.float32) / 255).permute(2, 0, 1) * 2 - 1 for s in (5, 6)])
    out = F.extract_batch(x)
    assert out.shape == (2, 32) and out.dtype == torch.float32
    for i in range(2):
        np.testing.assert_allclose(out[i].numpy(), F.extract_features(x[i]), atol=1e-5)
    torch.testing.assert_close(F.extract_batch(x * 1.5), F.extract_batch(x.mul(1.5).clamp(-1, 1)))
    assert F.extract_batch(torch.zeros(0, 3, 8, 8)).shape == (0, 32)


# --- a folder, a corrupt file, the cache ------------------------------------------------------


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(photo_like(10 + i)).save(folder / f"p{i}.png")
    (folder / "sub" / "copy.png").write_bytes((folder / "p0.png").read_bytes())  # same bytes, same key
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return folder


def test_folder_reports_corrupt_files_and_caches(photo_folder, tmp_course_dirs, monkeypatch):
    paths, feats, failures = F.extract_folder(photo_folder, workers=1, progress=False)
    assert [p.name for p in paths] == ["p0.png", "p1.png", "p2.png", "copy.png"]
    assert [p.name for p, _ in failures] == ["broken.jpg"] and "broken.jpg" in failures[0][1]
    np.testing.assert_array_equal(feats[0], feats[3])
    np.testing.assert_allclose(feats[1], F.extract_features(photo_like(11)), atol=1e-6)
    cache = F.default_cache_path()
    assert cache.is_file() and cache.parent == tmp_course_dirs / "cache"
    assert len(F.load_cache(cache)) == 3  # three distinct contents

    calls = []
    original = F.features_of_file

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(F, "features_of_file", counting)
    again = F.extract_folder(photo_folder, workers=1, progress=False)
    np.testing.assert_array_equal(again.features, feats)
    assert [p.name for p in calls] == ["broken.jpg"]  # only the unreadable file is tried again

    Image.fromarray(photo_like(20)).save(photo_folder / "p2.png")  # an edited photo is measured anew
    calls.clear()
    edited = F.extract_folder(photo_folder, workers=1, progress=False)
    assert sorted(p.name for p in calls) == ["broken.jpg", "p2.png"]
    np.testing.assert_allclose(edited.features[2], F.extract_features(photo_like(20)), atol=1e-6)


def test_folder_in_parallel_without_cache_and_with_a_broken_cache(photo_folder, tmp_path):
    serial = F.extract_folder(photo_folder, workers=1, cache=False, progress=False)
    parallel = F.extract_folder(photo_folder, workers=2, cache=False, progress=False)
    np.testing.assert_array_equal(parallel.features, serial.features)
    assert parallel.paths == serial.paths and len(parallel.failures) == 1
    spread = F.extract_folder(photo_folder, workers=1, cache=False, progress=False, limit=2)
    assert [p.name for p in spread.paths] == ["copy.png"] and [p.name for p, _ in spread.failures] == ["broken.jpg"]
    broken = tmp_path / "broken-cache.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="broken-cache.npz is truncated or corrupt"):
        assert F.load_cache(broken) == {}
    with pytest.warns(UserWarning, match="rebuilt from the images"):
        rerun = F.extract_folder(photo_folder, workers=1, cache=broken, progress=False)
    np.testing.assert_array_equal(rerun.features, serial.features)
    assert len(F.load_cache(broken)) == 3


def test_a_file_that_cannot_be_read_is_listed_not_fatal(photo_folder, tmp_path, monkeypatch):
    from pathlib import Path

    from course_utils import data

    real = F.sha256_file
    locked = data.list_images(photo_folder)[0]

    def refuse(path, *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(F, "sha256_file", refuse)
    out = F.extract_folder(photo_folder, workers=1, cache=tmp_path / "c.npz", progress=False)
    assert locked not in out.paths and len(out.paths) >= 1
    assert any(p == locked and "Permission denied" in why for p, why in out.failures)
