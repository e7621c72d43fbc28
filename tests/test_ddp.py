"""Multi-process training (PyTorch DDP) on the CPU with the gloo backend: two ranks, one model."""

import os
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

WORLD = 2


def _photo_folder(folder):
    import cv2

    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(8):
        img = np.full((24, 24, 3), 220, np.uint8)
        cv2.circle(img, (12, 12), 4 + i % 5, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cv2.imwrite(str(folder / f"p{i}.png"), img)


def _rank_main(rank: int, tmp: str) -> None:
    """One process: join the group, train the tiny photo model on its share, save its weights."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD)
    try:
        from course_utils import photo_data, photos, training
        from course_utils.unet import UNetConfig

        assert training.rank_and_world() == (rank, WORLD)  # what train_photo_model splits the data by
        torch.manual_seed(100 + rank)  # a different random state per rank: DDP must still agree
        ps = photo_data.load_photos(os.path.join(tmp, "photos"), size=16, progress=False, workers=1)
        cfg = UNetConfig.photo_small(16, base_channels=8, groups=4)
        model, result = photos.train_photo_model(
            ps,
            cfg=cfg,
            epochs=1,
            batch_size=2,
            lr=1e-3,
            run_dir=os.path.join(tmp, "run"),
            sample_every=None,
            progress=False,
            seed=0,
        )
        raw = result.model.state_dict()
        save_file({k: v.contiguous() for k, v in raw.items()}, os.path.join(tmp, f"rank{rank}.safetensors"))
        with open(os.path.join(tmp, f"rank{rank}.txt"), "w") as handle:
            handle.write(f"{result.step} {result.losses[-1]!r}")
        assert training.last_checkpoint(os.path.join(tmp, "run")) is not None
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed with gloo")
def test_two_ranks_end_with_identical_weights(tmp_path, tmp_course_dirs):
    from course_utils import photo_data, training
    from course_utils.recipes import Recipe
    from course_utils.unet import UNetConfig, build_unet

    _photo_folder(tmp_path / "photos")
    photo_data.load_photos(tmp_path / "photos", size=16, progress=False, workers=1)  # fill the caches once
    mp.spawn(_rank_main, args=(str(tmp_path),), nprocs=WORLD, join=True)
    weights = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(WORLD)]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)
    steps = [open(tmp_path / f"rank{r}.txt").read().split() for r in range(WORLD)]
    assert steps[0] == steps[1] and int(steps[0][0]) == 2  # 8 photos / 2 ranks / batch 2 = 2 steps
    torch.manual_seed(0)  # the seed train_photo_model builds the model with
    start = build_unet(UNetConfig.photo_small(16, base_channels=8, groups=4)).state_dict()
    assert any(not torch.equal(start[k], weights[0][k]) for k in start if k in weights[0])  # it did train
    assert len(list((tmp_path / "run").glob("epoch_*.safetensors"))) == 1  # rank 0 alone writes checkpoints
    record = training.read_record(training.last_checkpoint(tmp_path / "run"))
    recipe = Recipe.from_dict(record["recipe"])  # the run's record holds the one recipe type
    assert (recipe.name, recipe.batch_size) == ("photo-16", 2)
    assert recipe.extra["world_size"] == 2 and recipe.extra["n_photos"] == 8
    assert not list((tmp_path / "run").glob("samples_epoch_*.png"))  # sample_every=None: no grids
