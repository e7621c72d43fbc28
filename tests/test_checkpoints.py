"""One checkpoint format for everything the course ships: tensors + a JSON record with recipe and hash."""

from pathlib import Path

import pytest

from course_utils import checkpoints, errors
from course_utils.files import sha256_file
from course_utils.recipes import Recipe

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


def _shipped():
    return sorted(p for p in SHIPPED.glob("*.safetensors") if ".fast." not in p.name)


def test_every_shipped_checkpoint_has_a_record_with_its_hash_and_recipe():
    files = _shipped()
    assert {p.stem for p in files} >= {
        "mnist-ddpm",
        "mnist-fm",
        "mnist-cfg",
        "mnist-classifier",
        "photo-32",
        "photo-ae",
    }
    assert not list(SHIPPED.glob("*.sha256")), "one format: no sidecar hash files"
    for path in files:
        record = checkpoints.read_record(path)
        assert record["sha256"] == sha256_file(path), path.name
        recipe = Recipe.from_dict(record["recipe"])
        assert (
            recipe.to_dict()["prediction"]
            == {"ddpm": "eps", "flow": "velocity", "classify": None, "autoencode": None}[recipe.objective]
        )
        tensors, _ = checkpoints.load_checkpoint(path)
        assert tensors and all(k.startswith("model.") for k in tensors), path.name


def test_a_cut_short_record_names_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"x")
    path.with_suffix(".json").write_text('{"sha256": "ab')
    with pytest.raises(errors.CheckpointError, match="m.json"):
        checkpoints.read_record(path)
    with pytest.raises(errors.BadFile):  # the family
        checkpoints.load_checkpoint(path)


def test_error_families_keep_the_builtin_types():
    assert issubclass(errors.BadRequest, ValueError) and issubclass(errors.CheckpointError, RuntimeError)
    from course_utils import metrics, training

    assert training.CheckpointError is metrics.CheckpointError is errors.CheckpointError
