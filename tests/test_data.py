import gzip
import struct

import numpy as np
import pytest
import torch

from course_utils import data
from course_utils.files import md5_bytes

from .conftest import mnist_available

needs_mnist = pytest.mark.skipif(not mnist_available(), reason="MNIST not found (set COURSE_DATA_DIR)")


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fake_dataset(monkeypatch, tmp_path, payloads, mirrors=()):
    spec = data.DatasetSpec(name="toy", files={k: md5_bytes(v) for k, v in payloads.items()}, mirrors=mirrors)
    monkeypatch.setitem(data.DATASETS, "toy", spec)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)  # so <repo>/data is a temporary folder too
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "course-utils"\n')
    return spec


def test_read_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(arr))
    (tmp_path / "b.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "b.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError):
        data.read_idx(tmp_path / "bad")


def test_resolver_prefers_environment_then_repo(monkeypatch, tmp_path):
    payload = {"f": b"hello"}
    _fake_dataset(monkeypatch, tmp_path, payload)
    (tmp_path / "data" / "toy").mkdir(parents=True)
    (tmp_path / "data" / "toy" / "f").write_bytes(b"hello")
    assert data.resolve("toy") == tmp_path / "data" / "toy"
    (tmp_path / "env" / "toy").mkdir(parents=True)
    (tmp_path / "env" / "toy" / "f.gz").write_bytes(gzip.compress(b"hello"))
    assert data.resolve("toy") == tmp_path / "env" / "toy"
    assert data.verify("toy") == {"f": True}


def test_offline_and_missing_says_what_to_put_where(monkeypatch, tmp_path):
    _fake_dataset(monkeypatch, tmp_path, {"f": b"x"}, mirrors=("http://127.0.0.1:9/nothing/",))
    with pytest.raises(data.DataNotFoundError) as err:
        data.resolve("toy")
    message = str(err.value)
    assert "f.gz" in message and str(tmp_path / "env" / "toy") in message and "COURSE_DATA_DIR" in message


def test_download_is_verified_by_checksum(monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "f.gz").write_bytes(gzip.compress(b"good"))
    _fake_dataset(monkeypatch, tmp_path, {"f": b"good"}, mirrors=(mirror.as_uri() + "/",))
    folder = data.resolve("toy")
    assert folder == tmp_path / "data" / "toy" and gzip.decompress((folder / "f.gz").read_bytes()) == b"good"

    (mirror / "g.gz").write_bytes(gzip.compress(b"tampered"))
    _fake_dataset(monkeypatch, tmp_path, {"g": b"original"}, mirrors=(mirror.as_uri() + "/",))
    with pytest.raises(data.DataNotFoundError, match="checksum"):
        data.resolve("toy")
    assert not (tmp_path / "data" / "toy" / "g.gz").exists()


def test_unknown_dataset():
    with pytest.raises(KeyError):
        data.resolve("imagenet")


@needs_mnist
def test_mnist_shapes_scales_and_labels():
    x, y = data.load_mnist("test")
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10_000,) and set(y.unique().tolist()) == set(range(10))
    assert x.min() == -1 and x.max() == 1
    xu, _ = data.load_mnist("test", scale="unit", limit=5)
    assert xu.shape[0] == 5 and xu.min() == 0 and xu.max() == 1
    torch.testing.assert_close(data.to_unit(x[:5]), xu)
    xt, yt = data.load_mnist("train", limit=100)
    assert xt.shape == (100, 1, 28, 28) and yt[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    with pytest.raises(ValueError):
        data.load_mnist("val")


@needs_mnist
def test_mnist_files_match_published_checksums():
    assert all(data.verify("mnist").values())


def test_scale_round_trip():
    x = torch.rand(2, 1, 4, 4)
    torch.testing.assert_close(data.to_unit(data.to_signed(x)), x)


def test_images_read_in_any_mode(tmp_path):
    from PIL import Image

    rgb = (np.random.default_rng(0).random((8, 9, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    rgba = np.dstack([rgb, np.full((8, 9), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "deep.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    paths = data.list_images(tmp_path)
    assert [p.name for p in paths] == ["broken.jpg", "deep.png", "gray.png", "rgb.png", "rgba.png"]
    np.testing.assert_allclose(data.load_image(tmp_path / "rgb.png"), rgb / 255, atol=1e-6)
    np.testing.assert_allclose(data.load_image(tmp_path / "rgba.png"), rgb / 255, atol=1e-6)
    np.testing.assert_allclose(data.load_image(tmp_path / "gray.png")[..., 1], rgb[..., 0] / 255, atol=1e-6)
    np.testing.assert_allclose(data.load_image(tmp_path / "deep.png")[..., 0], rgb[..., 0] / 255, atol=1e-4)
    with pytest.raises(ValueError, match="broken.jpg"):
        data.load_image(tmp_path / "broken.jpg")


def test_sample_photo_and_tensor_conversion():
    img = data.sample_photo("astronaut", size=64)
    assert img.shape == (64, 64, 3) and 0 <= img.min() and img.max() <= 1
    x = data.image_to_tensor(img)
    assert x.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(data.tensor_to_image(x), img, atol=1e-6)
