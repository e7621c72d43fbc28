"""Claims: asserted at the sizes students run, a named warning at the CI smoke size; the ledger finds them."""

import json

import pytest

from course_utils import claims


def test_a_claim_that_holds_prints_and_one_that_fails_raises_in_full_mode(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "0")
    assert claims.claim("two beats one (2 vs 1)", 2 > 1)
    assert "holds    two beats one" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="one beats two"):
        claims.claim("one beats two", 1 > 2)


def test_in_fast_mode_a_failing_claim_is_a_warning_that_names_it(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert claims.claim("one beats two", 1 > 2) is False
    assert "WARNING  (fast mode) does not hold here: one beats two" in capsys.readouterr().out


def test_the_ledger_lists_every_claim_with_its_cell_and_condition(tmp_path):
    cells = [
        {"cell_type": "markdown", "source": ["claims.claim('not code', True)"]},
        {"cell_type": "code", "source": ["%matplotlib inline"]},
        {"cell_type": "code", "source": ["x = 3\n", "claims.claim(f'x is small ({x})', x < 5)\n", "claim('bare', x)"]},
    ]
    (tmp_path / "06_demo.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    entries = claims.ledger([tmp_path / "06_demo.ipynb"])
    assert [(e.cell, e.text, e.condition) for e in entries] == [(2, "f'x is small ({x})'", "x < 5"), (2, "'bare'", "x")]
    assert claims.main(["--folder", str(tmp_path)]) == 0
    assert claims.main(["--folder", str(tmp_path / "none")]) == 2


def test_the_course_notebooks_back_their_outcome_sentences_with_claims():
    # the notebooks audited so far: each keeps its claims in the ledger
    found = {e.notebook for e in claims.ledger(sorted(claims.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))}
    audited = {
        "02_denoising",
        "03_unet_denoiser",
        "04_time_conditioning",
        "05_class_conditioning_cfg",
        "06_ddim_and_samplers",
        "07_few_step_generation",
        "08_image_editing",
        "09_visual_features",
        "10_latent_diffusion",
        "11_feature_conditioned_model",
        "12_appendix_text_to_image",
    }
    assert audited <= found, sorted(audited - found)
