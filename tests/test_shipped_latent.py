"""The shipped latent photo model (photo-ae + photo-latent) and ``python -m course_utils generate photo``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from course_utils import autoencoder, checkpoints, features, latent, photos
from course_utils.__main__ import main
from course_utils.errors import BadRequest

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "checkpoints"
AE, LATENT = SHIPPED / "photo-ae.safetensors", SHIPPED / "photo-latent.safetensors"


def flower_photo() -> Path:
    from course_utils import data

    return data.list_images(data.resolve("flower_photos"))[0]


def test_shipped_pair_is_small_verified_and_records_its_training():
    sizes = [p.stat().st_size for p in (AE, LATENT)]
    assert sum(sizes) <= 25 * 2**20, f"shipped latent model is {sum(sizes) / 2**20:.1f} MB"
    ae, ae_record = latent.load_autoencoder(AE, device=torch.device("cpu"))
    recipe = ae_record["recipe"]
    assert recipe["objective"] == "autoencode" and "s of training on" in recipe["trained"]
    assert ae_record["split"]["held_out"] > 300 and ae_record["split"]["train"] > 3000
    scores = ae_record["scores"]
    assert scores["psnr"] >= scores["psnr_bicubic_from_32"] + 3.0  # the goal, on the held-out photos
    assert set(scores["feature_mae"]) == {*features.FEATURE_GROUPS, "ALL"}
    assert torch.allclose(ae.latent_scale, torch.tensor(recipe["extra"]["latent_scale"]), rtol=1e-3)
    model, record = latent.load_latent_model(LATENT, device=torch.device("cpu"))
    assert record["recipe"]["extra"]["autoencoder_sha256"] == ae_record["sha256"]
    assert model.image_size == 256 and model.cfg.in_channels == ae.cfg.latent_channels


def test_the_shipped_model_draws_256px_photos_independent_of_the_batch():
    model, _ = latent.load_latent_model(LATENT, device=torch.device("cpu"))
    feats = torch.rand(2, 32, generator=torch.Generator().manual_seed(0))
    both = photos.generate(model, feats, steps=2, seed=5)
    second = photos.generate(model, feats[1:], steps=2, generator=photos.PerSample.from_seed(5, 1, start=1))
    assert both.shape == (2, 3, 256, 256) and both.abs().max() <= 1
    assert (both[1] - second[0]).abs().max() < 5e-3  # the same image (float rounding differs with the batch)


def test_a_latent_model_refuses_an_autoencoder_it_was_not_trained_with(tmp_path):
    other = autoencoder.Autoencoder(autoencoder.AEConfig(latent_channels=8, width=8, blocks=0, refine=0))
    record = dict(recipe=latent.autoencoder_recipe(other.cfg).to_dict())
    checkpoints.export_weights(other, tmp_path / "photo-ae.safetensors", record)
    shutil.copy(LATENT, tmp_path / "photo-latent.safetensors")
    shutil.copy(LATENT.with_suffix(".json"), tmp_path / "photo-latent.json")
    with pytest.raises(BadRequest, match="trained on the latents of the autoencoder"):
        latent.load_latent_model(tmp_path / "photo-latent.safetensors", autoencoder=tmp_path / "photo-ae.safetensors")


# -- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, says",
    [
        ("[0.5, 0.5]", "a list needs all 32 values"),
        ('{"dominant_hue": NaN}', "finite number in [0, 1]"),
        ('{"dominant_hue": 1.5}', "finite number in [0, 1]"),
        ('{"not_a_feature": 0.5}', "unknown feature name"),
        ("{broken", "not valid JSON"),
        ('"a string"', "expected a list of 32 numbers"),
    ],
)
def test_generate_refuses_a_bad_request_before_loading_a_model(tmp_path, capsys, payload, says):
    request = tmp_path / "request.json"
    request.write_text(payload)
    with pytest.raises(SystemExit) as stop:
        main(["generate", "photo", "--features", str(request), "--out", str(tmp_path / "out"), "--model", "missing"])
    assert stop.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_generate_refuses_bad_images_groups_and_options(tmp_path, capsys):
    out = str(tmp_path / "out")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    cases = [
        (["--like", str(bad)], "cannot read"),
        (["--like", str(tmp_path / "none.png")], "cannot read"),
        (["--like", str(flower_photo()), "--only", "SHAPES"], "unknown name(s) 'SHAPES'"),
        (["--features", str(bad), "--only", "COLOR"], "only goes with --like"),
        (["--like", str(flower_photo()), "--n", "0"], "--n"),
        (["--like", str(flower_photo()), "--n", "1001"], "--n"),
        (["--like", str(flower_photo()), "--seed", "-1"], "--seed"),
    ]
    for extra, says in cases:
        with pytest.raises(SystemExit) as stop:
            main(["generate", "photo", *extra, "--out", out, "--model", "missing"])
        assert stop.value.code == 2
        assert says in capsys.readouterr().err, extra
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        main(["generate", "photo", "--like", str(flower_photo()), "--out", str(tmp_path / "file")])
    assert "is a file" in capsys.readouterr().err


def test_generate_writes_photos_and_their_features(tmp_path, capsys):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dominant_hue": 0.1, "brightness_var": 0.4}))
    out = tmp_path / "out"
    args = [
        "generate",
        "photo",
        "--features",
        str(request),
        "--n",
        "2",
        "--seed",
        "3",
        "--steps",
        "2",
        "--out",
        str(out),
    ]
    assert main([*args, "--batch", "2", "--no-progress"]) == 0
    report = json.loads((out / "features.json").read_text())
    assert report["asked"] == ["dominant_hue", "brightness_var"] and report["requested"]["dominant_hue"] == 0.1
    assert report["guidance"] == latent.GUIDANCE == 3.0  # the default: the scale the capstone chose
    assert len(report["images"]) == 2 and len(report["images"][0]["measured"]) == 32
    first = cv2.imread(str(out / "photo_000.png"))
    assert first.shape == (256, 256, 3)
    again = tmp_path / "again"
    assert main([*args[:-1], str(again), "--batch", "1", "--no-progress"]) == 0
    a, b = (cv2.imread(str(folder / "photo_001.png")).astype(int) for folder in (again, out))
    assert abs(a - b).max() <= 2  # the batch never changes an image (beyond float rounding)
    like = tmp_path / "like"
    assert (
        main(
            [
                "generate",
                "photo",
                "--like",
                str(flower_photo()),
                "--only",
                "LIGHTING",
                "--n",
                "1",
                "--steps",
                "2",
                "--out",
                str(like),
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((like / "features.json").read_text())["asked"] == features.FEATURE_GROUPS["LIGHTING"]
