"""The README's measured numbers, read back from the result files that hold them.

Each sentence or table row of the README that states a benchmark's number is rebuilt here from the
JSON the benchmark wrote (``benchmarks/results/``), and must appear in the README as it is; a goal
marked met or missed must be what its numbers say. A rerun of a benchmark that changes a number
therefore fails here until the README says the new number: the README's part of the claims ledger
(the notebooks' part is ``python -m course_utils claims``).
"""

import json
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
GROUPS = ("COLOR", "LIGHTING", "MATERIAL", "SHAPE", "TOPOLOGY")


def _readme() -> str:
    return re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))  # sentences span lines


def _result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _says(text: str) -> None:
    assert text in _readme(), f"the README does not say (or no longer says): {text!r}"


def _listed(values) -> str:
    """ "a, b and c", as the README lists numbers."""
    values = list(values)
    return ", ".join(values[:-1]) + f" and {values[-1]}"


def _latent() -> dict:
    """The protocol's reading of the shipped pair, at the guidance the sweep on training requests chose (3)."""
    return _result("latent_photo_eval.json")


def _latent_w2() -> dict:
    """The protocol's reading at w = 2, its guidance before that sweep: the trials were paired with it."""
    return _result("latent_photo_eval_w2.json")


def _training_request_groups(name: str) -> dict:
    """Per group, the protocol's scores on the 256 training requests (guidance 2) in the results file ``name``."""
    return _result(name)["guidance_scales"]["2.0"]["groups"]


def test_the_capstone_fidelity_table_is_the_measured_one():
    r = _latent()
    latent, p32 = r["latent (256 px)"]["fidelity"], r["photo-32 upsampled to 256"]["fidelity"]
    for group in (*GROUPS, "ALL"):
        a, b = latent[group], p32[group]
        _says(
            f"| {group} | {a['mae']:.3f} ({a['mae_shuffled']:.3f}) | {a['corr']:.2f} ({a['corr_shuffled']:.2f}) "
            f"| {b['mae']:.3f} | {b['corr']:.2f} |"
        )


def _slashed(values, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def test_the_feature_ceiling_is_the_shipped_autoencoders():
    from course_utils import latent

    ceiling = _result("feature_ceiling.json")
    _, record = latent.load_autoencoder(device=torch.device("cpu"))
    assert ceiling["autoencoder_sha256"] == record["sha256"]
    for group, mae in record["scores"]["feature_mae"].items():  # the record's, measured before float16 export
        assert abs(ceiling["feature_mae"][group] - mae) <= 2e-4, group
    assert ceiling["photos"] == record["split"]["held_out"]
    _says(
        f"keep a mean absolute error of {_slashed((ceiling['feature_mae'][g] for g in GROUPS), '.3f')} and a "
        f"correlation of {_slashed((ceiling['feature_corr'][g] for g in GROUPS), '.2f')}"
    )
    _says(f"correlation {_slashed((ceiling['feature_corr_bicubic_from_32'][g] for g in GROUPS), '.2f')}.")
    # SHAPE and TOPOLOGY: far below what the decoder and a 32 px image keep
    r = _latent()
    drawn = {name: r[name]["fidelity"] for name in ("latent (256 px)", "photo-32 upsampled to 256")}
    kept, kept_32 = ceiling["feature_corr"], ceiling["feature_corr_bicubic_from_32"]
    for g in ("SHAPE", "TOPOLOGY"):
        assert kept[g] - drawn["latent (256 px)"][g]["corr"] > 0.5, g
        assert kept_32[g] - drawn["photo-32 upsampled to 256"][g]["corr"] > 0.5, g
    pair = lambda d: f"{d['SHAPE']:.2f} and {d['TOPOLOGY']:.2f}"  # noqa: E731
    corr = {name: {g: f[g]["corr"] for g in GROUPS} for name, f in drawn.items()}
    _says(
        f"keep them with correlation {pair(kept)}, and even the 32 px thumbnails with {pair(kept_32)} (above), "
        f"against {pair(corr['latent (256 px)'])} for the latent model and {pair(corr['photo-32 upsampled to 256'])} "
        "for photo-32. The limit is the denoiser."
    )


def test_the_capstone_realism_and_speed_are_the_measured_ones():
    r = _latent()
    _says(f"| real training photos (floor) | {r['fd_floor_real_vs_real']:.3f} |")
    _says(f"| latent model | {r['latent (256 px)']['fd_vs_held_out']:.3f} |")
    _says(f"| photo-32, enlarged | {r['photo-32 upsampled to 256']['fd_vs_held_out']:.3f} |")
    speed = r["latent seconds per 256px image, batch 1"]
    _says(f"takes {speed['2 threads']:.2f} s on two threads of the CI machine and {speed['1 thread']:.2f} s on one")


def _goal(met: bool, text: str) -> str:
    return f"- {'met' if met else '**missed**'}: {text}"


def _corr_over_line(corr: float, shuffled: float) -> float:
    """How far a correlation lies above its goal's line as the goals list reads it: the correlation,
    rounded as printed, less the shuffled baseline, rounded as printed, + 0.2 (rounded again: -0.02 +
    0.2 is 0.18)."""
    return round(corr, 2) - round(round(shuffled, 2) + 0.2, 2)


def _corr_goal_met(corr: float, shuffled: float) -> bool:
    """The correlation goal as the goals list reads it: at or above its line (:func:`_corr_over_line`)."""
    return _corr_over_line(corr, shuffled) >= 0


def _group_goals(groups: dict) -> dict[str, bool]:
    """The capstone's goals that one reading's group scores decide: every group's correlation at
    least shuffled + 0.2, COLOR's and LIGHTING's MAE at most 0.6x shuffled."""
    goals = {f"{g} correlation": _corr_goal_met(groups[g]["corr"], groups[g]["corr_shuffled"]) for g in GROUPS}
    goals.update({f"{g} error": groups[g]["mae"] <= 0.6 * groups[g]["mae_shuffled"] for g in ("COLOR", "LIGHTING")})
    return goals


def test_each_capstone_goal_is_marked_as_its_numbers_say():
    r = _latent()
    latent, p32 = r["latent (256 px)"], r["photo-32 upsampled to 256"]
    fd, fd32 = latent["fd_vs_held_out"], p32["fd_vs_held_out"]
    _says(_goal(fd < fd32, f"feature-space FD below photo-32's, enlarged ({fd:.3f} against {fd32:.3f})"))
    f = latent["fidelity"]
    for g in GROUPS:
        corr, shuffled = f[g]["corr"], f[g]["corr_shuffled"]
        _says(
            _goal(
                _corr_goal_met(corr, shuffled),
                f"{g} correlation at least shuffled + 0.2 ({corr:.2f} against {shuffled:.2f} + 0.2)",
            )
        )
    for g in ("COLOR", "LIGHTING"):
        mae, bound = f[g]["mae"], 0.6 * f[g]["mae_shuffled"]
        _says(
            _goal(
                mae <= bound,
                f"{g} MAE at most 0.6x shuffled ({mae:.3f} against {bound:.3f}: "
                f"a ratio of {mae / f[g]['mae_shuffled']:.2f})",
            )
        )
    shape, topo = f["SHAPE"]["corr"], f["TOPOLOGY"]["corr"]
    shape32, topo32 = p32["fidelity"]["SHAPE"]["corr"], p32["fidelity"]["TOPOLOGY"]["corr"]
    _says(
        _goal(
            shape > shape32 and topo > topo32,
            f"SHAPE and TOPOLOGY correlations above photo-32's under the same protocol "
            f"({shape:.2f} / {topo:.2f} against {shape32:.2f} / {topo32:.2f})",
        )
    )
    two = r["latent seconds per 256px image, batch 1"]["2 threads"]
    _says(_goal(two <= 3.0, f"one image within 3 s at batch size 1 on two cores ({two:.2f} s;"))
    assert shape > 0.19 and topo > 0.10  # "against the 0.19 / 0.10 that photo-32 scored ... at 32 px, both are above"
    _says("that photo-32 scored when measured at 32 px, both are above")


def test_the_close_goals_are_named_with_the_second_draw():
    f = _latent()["latent (256 px)"]["fidelity"]
    again = _result("latent_photo_eval_redraw.json")["latent (256 px)"]["fidelity"]
    assert all(_group_goals(f).values())  # "Every goal is met on the protocol's seeds"
    ratios = {g: _mae_ratio(f, g) for g in ("COLOR", "LIGHTING")}
    margins = {g: f[g]["corr"] - f[g]["corr_shuffled"] - 0.2 for g in ("SHAPE", "TOPOLOGY")}
    assert all(0.6 - r < 0.02 for r in ratios.values()) and margins["TOPOLOGY"] < 0.05 < margins["SHAPE"]
    _says(
        f"COLOR's and LIGHTING's MAE ratios are {ratios['COLOR']:.3f} and {ratios['LIGHTING']:.3f} against the "
        f"line's 0.6, and TOPOLOGY is {margins['TOPOLOGY']:.2f} above its line (SHAPE {margins['SHAPE']:.2f})"
    )
    missed = [k for k, met in _group_goals(again).items() if not met]
    assert missed == ["LIGHTING error"]
    _says(f"LIGHTING's ratio is {_mae_ratio(again, 'LIGHTING'):.3f} and misses; the other goals hold")
    w2 = _latent_w2()["latent (256 px)"]["fidelity"]
    c3, c2, l3, l2 = f["COLOR"], w2["COLOR"], f["LIGHTING"], w2["LIGHTING"]
    assert round(c3["mae"], 2) == round(c2["mae"], 2) and l3["mae"] > l2["mae"]  # "not by smaller errors"
    _says(
        f"COLOR's MAE is {c3['mae']:.3f} against {c2['mae']:.3f} at w = 2 and LIGHTING's {l3['mae']:.3f} against "
        f"{l2['mae']:.3f}, while their shuffled baselines rise from {c2['mae_shuffled']:.3f} and "
        f"{l2['mae_shuffled']:.3f} to {c3['mae_shuffled']:.3f} and {l3['mae_shuffled']:.3f}"
    )


def test_the_goals_met_at_their_line_at_w2_are_named():
    f = _latent_w2()["latent (256 px)"]["fidelity"]
    missed = [k for k, met in _group_goals(f).items() if not met]
    assert missed == ["COLOR error"]
    _says(f"met six of the seven group goals and missed COLOR's error (a ratio of {_mae_ratio(f, 'COLOR'):.3f})")
    margins = {g: f[g]["corr"] - f[g]["corr_shuffled"] - 0.2 for g in ("SHAPE", "TOPOLOGY")}
    light = f["LIGHTING"]["mae_shuffled"] * 0.6 - f["LIGHTING"]["mae"]
    assert all(0 <= round(m, 2) <= 0.01 for m in margins.values()) and 0 <= light < 0.001
    _says("SHAPE and TOPOLOGY by 0.01 and LIGHTING's error by less than 0.001")


def test_the_guidance_sweep_sentence_is_the_measured_one():
    sweep = _result("latent_guidance_sweep.json")["guidance_scales"]
    scales = sorted(sweep, key=float)
    assert [float(s) for s in scales] == [2.0, 3.0, 5.0]  # the sentence names these three
    corr = _listed(f"{sweep[s]['corr']:.3f}" for s in scales)
    fd = _listed(f"{sweep[s]['fd']:.2f}" for s in scales)
    _says(f"mean feature correlations {corr} and feature FD {fd}")
    first, last = sweep[scales[0]]["groups"], sweep[scales[-1]]["groups"]

    def moved(g):
        a, b = first[g]["corr"], last[g]["corr"]
        return f"{g} {'rose' if b > a else 'fell'} from {a:.2f} to {b:.2f}"

    _says(f"at w = 5 {moved('SHAPE')} and {moved('TOPOLOGY')}")
    assert sweep["5.0"]["fd"] > sweep["3.0"]["fd"] > sweep["2.0"]["fd"]  # "costs realism"
    assert sweep["5.0"]["corr"] - sweep["2.0"]["corr"] < 0.05  # "buys little fidelity"
    seen = _training_request_groups("latent_training_requests.json")
    _says(
        f"(SHAPE {first['SHAPE']['corr']:.2f} and TOPOLOGY {first['TOPOLOGY']['corr']:.2f} at w = 2, against "
        f"{seen['SHAPE']['corr']:.2f} and {seen['TOPOLOGY']['corr']:.2f} on the 256 training requests)"
    )


def test_the_training_request_comparison_is_the_measured_one():
    train = _result("latent_guidance_sweep_256.json")["guidance_scales"]["3.0"]["groups"]  # at the protocol's w
    held = _latent()["latent (256 px)"]["fidelity"]
    _says(
        f"SHAPE correlation {train['SHAPE']['corr']:.2f} and TOPOLOGY {train['TOPOLOGY']['corr']:.2f} against "
        f"{held['SHAPE']['corr']:.2f} and {held['TOPOLOGY']['corr']:.2f} on the held-out requests"
    )
    rest = ("COLOR", "LIGHTING", "MATERIAL")
    trained_corr = _listed(f"{train[g]['corr']:.2f}" for g in rest)
    held_corr = _listed(f"{held[g]['corr']:.2f}" for g in rest)
    _says(f"LIGHTING and MATERIAL give {trained_corr} against {held_corr}")
    train_w2 = _training_request_groups("latent_training_requests.json")
    held_w2 = _latent_w2()["latent (256 px)"]["fidelity"]
    _says(
        f"(at w = 2: SHAPE {train_w2['SHAPE']['corr']:.2f} and TOPOLOGY {train_w2['TOPOLOGY']['corr']:.2f} on the "
        f"training requests against {held_w2['SHAPE']['corr']:.2f} and {held_w2['TOPOLOGY']['corr']:.2f} on the "
        "held-out ones)"
    )
    for seen, new in ((train, held), (train_w2, held_w2)):
        for g in ("SHAPE", "TOPOLOGY"):  # "no better on photos it has seen than on new ones", at both scales
            assert seen[g]["corr"] <= new[g]["corr"] + 0.06, g
            assert seen[g]["corr"] < 0.25, g  # "steers only weakly"


def test_the_latent_model_follows_every_group_closer_than_photo_32():
    r = _latent()
    lat, p32 = r["latent (256 px)"], r["photo-32 upsampled to 256"]
    gaps = {g: lat["fidelity"][g]["corr"] - p32["fidelity"][g]["corr"] for g in GROUPS}
    assert min(gaps.values()) > 0 and min(gaps, key=gaps.get) == "COLOR"
    assert lat["fd_vs_held_out"] < p32["fd_vs_held_out"] / 2
    _says(
        f"colour by the least (correlation {lat['fidelity']['COLOR']['corr']:.2f} against "
        f"{p32['fidelity']['COLOR']['corr']:.2f}: photo-32 draws smooth colour fields), with less than half its "
        f"feature FD ({lat['fd_vs_held_out']:.3f} against {p32['fd_vs_held_out']:.3f})"
    )


def test_the_cpu_speed_ups_are_the_measured_ones():
    chunks = _result("sampling_chunks.json")
    whole, chunked = (chunks["ms_per_image"][k] for k in ("whole batch", f"chunks of {chunks['default_chunk']}"))
    _says(f"{whole:.0f} -> {chunked:.0f} ms per image for 500 digits")
    layout = _result("channels_last.json")["ms_per_step"]
    d16 = layout["MNIST UNet D = 16, batch 32 (04)"]
    _says(f"{d16['NCHW']:.0f} -> {d16['channels last']:.0f} ms per training step for the D = 16 UNet at batch 32")


def _cpu_times() -> dict:
    return _result("notebook_times_cpu.json")["notebooks"]


@pytest.mark.parametrize("notebook", sorted(_cpu_times()))
def test_the_cpu_size_table_is_the_measured_one(notebook):
    row = _cpu_times()[notebook]
    seconds = row["seconds"]
    shown = f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
    _says(f"| {notebook} | {shown} |")
    if notebook in ("04", "05"):  # the notebooks that train a generator: within 15 minutes at the CPU size
        assert seconds <= 15 * 60, f"notebook {notebook} took {seconds / 60:.1f} min at the CPU size"


def test_the_full_size_run_of_06_on_a_cpu_is_the_measured_one():
    record = _result("notebook_times_full_on_cpu.json")
    assert record["size"] == "full"
    row = record["notebooks"]["06"]
    _says(f"{row['seconds'] / 60:.1f} min, the sampler grid {row['longest cell']['seconds']:.0f} s of it")


def test_the_ddpm_cpu_trials_are_the_measured_ones():
    trials = {(t["epochs"], t["lr"], t["seed"]): t for t in _result("ddpm_cpu_trials.json")["trials"]}

    def pct(*key):
        return f"{trials[key]['confident']:.0%}"

    _says(
        f"three epochs gave {pct(3, 1e-3, 0)} and {pct(3, 1e-3, 1)} (lr 1e-3), {pct(3, 2e-3, 0)} and "
        f"{pct(3, 2e-3, 1)} (lr 2e-3) and {pct(3, 3e-3, 0)} (lr 3e-3, seed 0); four epochs gave "
        f"{pct(4, 1e-3, 0)} and {pct(4, 1e-3, 1)} "
        f"(FD {trials[4, 1e-3, 0]['fd']:.2f} and {trials[4, 1e-3, 1]['fd']:.2f})"
    )
    four = [t for (epochs, lr, _), t in trials.items() if (epochs, lr) == (4, 1e-3)]
    assert len(four) >= 2 and min(t["confident"] for t in four) > 0.53  # the margin the CPU size was chosen for


def _by_feature() -> dict:
    return _latent()  # the protocol's file keeps each feature's numbers


def _corr_range(rows: dict, names) -> str:
    values = sorted(rows[n]["corr"] for n in names)
    return f"{values[0]:.2f} to {values[-1]:.2f}"


def _colour_ratio_without_hue(per_feature: dict) -> float:
    """COLOR's error over its shuffled error, the group's other seven features alone."""
    rest = [v for n, v in per_feature.items() if v["group"] == "COLOR" and n != "dominant_hue"]
    return sum(v["mae"] for v in rest) / sum(v["mae_shuffled"] for v in rest)


def capstone_feature_sentences() -> list[str]:
    """The README's feature-by-feature reading of the capstone's misses, rebuilt from the protocol's file."""
    r = _by_feature()
    lat, p32 = r["latent (256 px)"]["per_feature"], r["photo-32 upsampled to 256"]["per_feature"]
    hue, hue_32 = r["latent (256 px)"]["dominant_hue"], r["photo-32 upsampled to 256"]["dominant_hue"]
    other_colour = [n for n, v in lat.items() if v["group"] == "COLOR" and n not in ("dominant_hue", "dominant_val")]
    ratio = _colour_ratio_without_hue(lat)
    outline = ("circularity", "solidity", "graph_density", "mean_curvature", "curv_variance", "affine_curvature")
    holes = ("euler_char", "genus", "num_holes", "spectral_gap", "betti_1")
    return [
        f"`dominant_hue` follows its request with correlation {lat['dominant_hue']['corr']:.2f} "
        f"(photo-32: {p32['dominant_hue']['corr']:.2f}) and `dominant_val` with {lat['dominant_val']['corr']:.2f} "
        f"({p32['dominant_val']['corr']:.2f}), while the other six colour features reach "
        f"{_corr_range(lat, other_colour)}",
        f"the short way round, its error is {hue['circular_mae']:.3f} instead of {hue['mae']:.3f}, "
        f"and {hue['share_past_half_a_turn']:.0%} of the images (photo-32: {hue_32['share_past_half_a_turn']:.0%})",
        f"Without `dominant_hue` the group's error would be {ratio:.2f}x shuffled instead of "
        f"{_mae_ratio(r['latent (256 px)']['fidelity'], 'COLOR'):.2f}x",
        f"`spectral_entropy` follows ({lat['spectral_entropy']['corr']:.2f}; photo-32 "
        f"{p32['spectral_entropy']['corr']:.2f}), the six outline features reach {_corr_range(lat, outline)} "
        f"(photo-32: {_corr_range(p32, outline)})",
        f"`complexity` follows ({lat['complexity']['corr']:.2f}); the hole counts, the Euler characteristic and "
        f"the spectral gap reach {_corr_range(lat, holes)}",
    ]


@pytest.mark.parametrize("index", range(5))
def test_the_capstone_feature_by_feature_reading_is_the_measured_one(index):
    _says(capstone_feature_sentences()[index])


def test_the_hue_is_the_colour_feature_furthest_from_its_request():
    lat = _by_feature()["latent (256 px)"]
    colour = {n: v["mae"] / v["mae_shuffled"] for n, v in lat["per_feature"].items() if v["group"] == "COLOR"}
    assert max(colour, key=colour.get) == "dominant_hue"
    group = lat["fidelity"]["COLOR"]
    assert _colour_ratio_without_hue(lat["per_feature"]) < group["mae"] / group["mae_shuffled"]
    _says(f"furthest from its request, {colour['dominant_hue']:.2f}x shuffled on its own")


def test_the_eta_sweep_is_the_measured_one():
    etas = _result("latent_eta_sweep.json")["etas"]
    order = sorted(etas, key=float)
    names = _listed(f"{float(e):g}" for e in order)
    corr = _listed(f"{etas[e]['corr']:.2f}" for e in order)
    fd = _listed(f"{etas[e]['fd']:.2f}" for e in order)
    _says(f"eta {names} gave mean correlations {corr} and feature FD {fd}")
    best = max(etas, key=lambda e: etas[e]["corr"])
    assert float(best) == 1.0  # "eta = 1 follows the requests best"
    assert min(etas, key=lambda e: etas[e]["fd"]) == "0.5"  # "eta = 0.5 reads a little more realistic"
    before = _result("latent_eta_sweep_simple_loss.json")["etas"]
    assert max(before, key=lambda e: before[e]["corr"]) == min(before, key=lambda e: before[e]["fd"]) == "1.0"
    _says(
        f"chose on both counts ({before['1.0']['corr']:.2f} and {before['1.0']['fd']:.2f} against "
        f"{before['0.5']['corr']:.2f} and {before['0.5']['fd']:.2f} at eta = 0.5)"
    )


def _simple_loss() -> dict:
    """The protocol's numbers of the latent model trained on the simple loss, shipped before Min-SNR."""
    return _result("latent_photo_eval_simple_loss.json")


def _beside_simple_loss(trial: dict) -> str:
    """How the README sets a trial's protocol numbers (fidelity and FD) beside the simple-loss model's."""
    c, before = trial["fidelity"], _simple_loss()["latent (256 px)"]
    s = before["fidelity"]
    return (
        f"SHAPE correlation {c['SHAPE']['corr']:.2f} and TOPOLOGY {c['TOPOLOGY']['corr']:.2f} (simple-loss model: "
        f"{s['SHAPE']['corr']:.2f} and {s['TOPOLOGY']['corr']:.2f}), COLOR MAE {c['COLOR']['mae']:.3f} and "
        f"LIGHTING MAE {c['LIGHTING']['mae']:.3f} ({s['COLOR']['mae']:.3f} and {s['LIGHTING']['mae']:.3f}), "
        f"feature FD {trial['fd_vs_held_out']:.3f} ({before['fd_vs_held_out']:.3f})"
    )


def test_the_crop_variant_trial_is_the_measured_one():
    trial = _result("latent_crop_variants.json")
    crops, simple = trial["held_out_protocol"]["latent (256 px)"], _simple_loss()["latent (256 px)"]
    c, s = crops["fidelity"], simple["fidelity"]
    seen = trial["training_requests"]["guidance_scales"]["2.0"]["groups"]
    seen_simple = _training_request_groups("latent_training_requests_simple_loss.json")
    minutes = sum(trial["epoch_seconds"]) / 60
    caching = int(re.search(r"cached in (\d+) s", trial["trained"]).group(1)) / 60
    simple_steps = _result("latent_min_snr.json")["simple_loss"]["steps"]
    _says(f"keep the number of steps ({trial['steps']:,} against {simple_steps:,})")
    _says(f"Trained in {minutes:.0f} minutes after {caching:.0f} minutes of caching")
    _says(_beside_simple_loss(crops))
    _says(
        f"reads SHAPE {seen['SHAPE']['corr']:.2f} and TOPOLOGY {seen['TOPOLOGY']['corr']:.2f}, against the "
        f"simple-loss model's {seen_simple['SHAPE']['corr']:.2f} and {seen_simple['TOPOLOGY']['corr']:.2f}"
    )
    assert all(seen[g]["corr"] < seen_simple[g]["corr"] for g in ("SHAPE", "TOPOLOGY"))  # "fitting the seen ones less"
    assert all(abs(c[g]["corr"] - s[g]["corr"]) < 0.06 for g in GROUPS)  # "within about one standard error"
    _says(
        f"SHAPE would pass ({c['SHAPE']['corr']:.2f} against {c['SHAPE']['corr_shuffled']:.2f} + 0.2) only because "
        f"its shuffled baseline moved from {s['SHAPE']['corr_shuffled']:.2f} to {c['SHAPE']['corr_shuffled']:.2f}"
    )
    assert _corr_goal_met(c["SHAPE"]["corr"], c["SHAPE"]["corr_shuffled"])
    assert not _corr_goal_met(s["SHAPE"]["corr"], s["SHAPE"]["corr_shuffled"])


def test_the_longer_run_is_the_measured_one():
    run = _result("latent_longer_run.json")
    more, before = run["continued"], run["shipped"]  # "shipped": the simple-loss model, shipped then
    held = run["held_out"]["fidelity"]
    seen = run["training_requests"]["groups"]
    seen_before = _training_request_groups("latent_training_requests_simple_loss.json")
    _says(f"for {more['epochs']} more epochs ({more['steps']:,} steps on top of its {before['steps']:,})")
    _says(f"at its final learning rate, {more['lr']:.0e}, held constant".replace("e-0", "e-"))
    _says(f"the training loss went from {before['epoch_losses'][-1]:.4f} to {more['epoch_losses'][-1]:.4f}")
    _says(
        f"{_beside_simple_loss(run['held_out'])}; on the 256 training "
        f"requests SHAPE {seen['SHAPE']['corr']:.2f} and TOPOLOGY {seen['TOPOLOGY']['corr']:.2f} "
        f"({seen_before['SHAPE']['corr']:.2f} and {seen_before['TOPOLOGY']['corr']:.2f})"
    )
    _says(f"{sum(more['epoch_seconds']) / 60:.0f} minutes of training on two threads")
    # "does not move the missed goals": every goal missed before is still missed
    for g in ("SHAPE", "TOPOLOGY"):
        assert not _corr_goal_met(held[g]["corr"], held[g]["corr_shuffled"])
    for g in ("COLOR", "LIGHTING"):
        assert held[g]["mae"] > 0.6 * held[g]["mae_shuffled"]


# -- Min-SNR weighting: the shipped latent model against the simple-loss one ---------------------


def _corrs(groups: dict) -> str:
    return " / ".join(f"{groups[g]['corr']:.2f}" for g in GROUPS)


def _ratios(groups: dict) -> str:
    return " / ".join(f"{groups[g]['mae'] / groups[g]['mae_shuffled']:.2f}" for g in ("COLOR", "LIGHTING"))


def min_snr_rows() -> list[str]:
    """The README's table of the Min-SNR run beside the simple-loss model, rebuilt from their files."""
    run, before = _result("latent_min_snr.json"), _simple_loss()["latent (256 px)"]
    redraw = run["held_out_redraw"]
    seen_before = _training_request_groups("latent_training_requests_simple_loss.json")
    now, again, seen = run["held_out"]["fidelity"], redraw["min_snr"]["fidelity"], run["training_requests"]["groups"]
    then, then_again = before["fidelity"], redraw["simple_loss"]["fidelity"]
    return [
        f"| group correlations, held-out requests, protocol seeds | {_corrs(now)} | {_corrs(then)} |",
        f"| the same requests, other noise (seed {redraw['seed']}) | {_corrs(again)} | {_corrs(then_again)} |",
        f"| 256 training requests | {_corrs(seen)} | {_corrs(seen_before)} |",
        f"| COLOR / LIGHTING MAE over shuffled, protocol seeds | {_ratios(now)} | {_ratios(then)} |",
        f"| the same, other noise | {_ratios(again)} | {_ratios(then_again)} |",
        f"| feature FD to held-out photos, protocol seeds / other noise | {run['held_out']['fd_vs_held_out']:.3f} / "
        f"{redraw['min_snr']['fd_vs_held_out']:.3f} | {before['fd_vs_held_out']:.3f} / "
        f"{redraw['simple_loss']['fd_vs_held_out']:.3f} |",
    ]


@pytest.mark.parametrize("index", range(6))
def test_the_min_snr_table_is_the_measured_one(index):
    _says(min_snr_rows()[index])


def test_the_min_snr_reading_is_what_its_numbers_say():
    run, before = _result("latent_min_snr.json"), _simple_loss()["latent (256 px)"]
    redraw = run["held_out_redraw"]
    draws = [(run["held_out"], before), (redraw["min_snr"], redraw["simple_loss"])]
    seen = run["training_requests"]["groups"]
    seen_before = _training_request_groups("latent_training_requests_simple_loss.json")
    # "the colour gain ... on all three request sets"
    gains = [a["fidelity"]["COLOR"]["corr"] - b["fidelity"]["COLOR"]["corr"] for a, b in draws]
    gains.append(seen["COLOR"]["corr"] - seen_before["COLOR"]["corr"])
    assert all(f"{g:+.2f}" == "+0.10" for g in gains)
    _says("Colour gains on every set of requests (+0.10 correlation")
    # SHAPE and TOPOLOGY rise on both held-out draws, not on the training requests
    rises = [a["fidelity"][g]["corr"] - b["fidelity"][g]["corr"] for a, b in draws for g in ("SHAPE", "TOPOLOGY")]
    assert min(rises) > 0
    _says(f"rise on both draws of the held-out requests (by {min(rises):.2f} to {max(rises):.2f}), not on the")
    for g in ("SHAPE", "TOPOLOGY"):
        assert seen[g]["corr"] <= seen_before[g]["corr"], g
    # LIGHTING's ratio: under 0.6 on the protocol's seeds, over it on the other draw
    light = [d["fidelity"]["LIGHTING"] for d, _ in draws]
    assert light[0]["mae"] <= 0.6 * light[0]["mae_shuffled"] and light[1]["mae"] > 0.6 * light[1]["mae_shuffled"]
    # realism pays: the FD rises on both draws
    rises = [a["fd_vs_held_out"] - b["fd_vs_held_out"] for a, b in draws]
    assert all(r > 0 for r in rises)
    _says(f"the feature FD rises by {min(rises):.2f} to {max(rises):.2f}")
    simple_steps, steps = run["simple_loss"]["steps"], run["trained"]["steps"]
    assert steps == simple_steps
    _says(f"(the same {steps:,} steps, seed and cached latents)")


def test_min_snr_leaves_the_noisiest_steps_as_they_are():
    from course_utils import latent, photos

    T = photos.T_STEPS
    snr = photos.schedule().snr(torch.arange(1, T + 1) / T)
    share = (snr <= latent.LATENT_SNR_GAMMA).float().mean().item()
    _says(f"the steps with SNR <= {latent.LATENT_SNR_GAMMA:g}, the noisiest {share:.0%} of the cosine schedule")


def test_the_shipped_pair_size_and_training_time_are_the_recorded_ones():
    folder = ROOT / "data" / "checkpoints"
    size = sum((folder / f"photo-{n}.safetensors").stat().st_size for n in ("ae", "latent"))
    _says(f"Together {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB) in float16")
    _says(f"- met: shipped together in at most 25 MB ({size / 1e6:.1f} MB)")
    ae, lat = (json.loads((folder / f"photo-{n}.json").read_text()) for n in ("ae", "latent"))
    ae_min, lat_min = sum(ae["epoch_seconds"]) / 60, sum(lat["epoch_seconds"]) / 60
    cache_min = int(re.search(r"built in (\d+) s", lat["recipe"]["trained"]).group(1)) / 60
    assert ae_min + cache_min + lat_min <= 120
    _says(
        f"- met: both models trained within about 2 hours on this CPU (autoencoder {ae_min:.0f} min, latent cache "
        f"{cache_min:.0f} min, latent UNet {lat_min:.0f} min)"
    )
    _says(f"{lat_min:.0f} minutes on two threads of the CI machine; building the latent cache took {cache_min:.0f}")


def test_notebook_10_names_the_measured_x0_bound_sweep():
    bounds = _result("latent_clip_sweep.json")["bounds"]
    order = sorted(bounds, key=float)
    mae = _listed(f"{bounds[b]['mae']:.3f}" for b in order)
    fd = _listed(f"{bounds[b]['fd']:.2f}" for b in order)
    names = _listed(f"{float(b):g}" for b in order)
    cells = json.loads((ROOT / "notebooks" / "10_latent_diffusion.ipynb").read_text(encoding="utf-8"))["cells"]
    text = re.sub(r"\s+", " ", " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"))
    said = f"{names} gave a feature error of {mae} and a feature-space FD of {fd}"
    assert said in text, f"notebook 10 does not say: {said!r}"
    from course_utils import latent

    assert min(bounds, key=lambda b: bounds[b]["fd"]) == f"{latent.X0_CLIP:g}.0"  # "chose it"


# -- the hue as an angle: a trial on the shipped recipe -------------------------------------------


def _paired_runs(name: str, key: str) -> tuple[dict, dict]:
    """(the run under ``key``, the shipped model) as the paired-run file ``name`` holds them
    (``benchmarks/latent_photo_eval.py``'s ``write_paired_run``): per set of requests, the group scores."""
    run = _result(name)
    pick = lambda d: dict(  # noqa: E731
        held_out=d["held_out"]["fidelity"],
        redraw=d["held_out_redraw"]["fidelity"],
        seen=d["training_requests"]["groups"],
    )
    return pick(run[key]), pick(run["shipped"])


def paired_rows(name: str, key: str) -> list[str]:
    """The README's table of a run of the recipe beside the shipped model, rebuilt from its file."""
    run = _result(name)
    other, shipped = _paired_runs(name, key)
    hue, hue_shipped = run[key]["held_out"]["dominant_hue"], run["shipped"]["held_out"]["dominant_hue"]
    fd = lambda d: f"{d['held_out']['fd_vs_held_out']:.3f} / {d['held_out_redraw']['fd_vs_held_out']:.3f}"  # noqa: E731
    return [
        f"| group correlations, held-out requests, protocol seeds | {_corrs(other['held_out'])} "
        f"| {_corrs(shipped['held_out'])} |",
        f"| the same requests, other noise (seed {run[key]['held_out_redraw']['seed']}) "
        f"| {_corrs(other['redraw'])} | {_corrs(shipped['redraw'])} |",
        f"| 256 training requests | {_corrs(other['seen'])} | {_corrs(shipped['seen'])} |",
        f"| COLOR / LIGHTING MAE over shuffled, protocol seeds | {_ratios(other['held_out'])} "
        f"| {_ratios(shipped['held_out'])} |",
        f"| the same, other noise | {_ratios(other['redraw'])} | {_ratios(shipped['redraw'])} |",
        f"| the hue's error, the linear way / the short way round (protocol seeds) | {hue['mae']:.3f} / "
        f"{hue['circular_mae']:.3f} | {hue_shipped['mae']:.3f} / {hue_shipped['circular_mae']:.3f} |",
        f"| feature FD to held-out photos, protocol seeds / other noise | {fd(run[key])} | {fd(run['shipped'])} |",
        f"| group goals met of the 7 a reading decides (protocol seeds / other noise / training requests) "
        f"| {_goals_met(other)} | {_goals_met(shipped)} |",
    ]


def _goals_met(readings: dict) -> str:
    return " / ".join(str(sum(_group_goals(readings[k]).values())) for k in _SETS)


HUE_RUN = ("latent_hue_angle.json", "hue_angle")
SEED_RUN = ("latent_training_seed.json", "other_seed")
SCALE_RUN = ("latent_scale_shift.json", "scale_shift")
SCALE_SEED_RUN = ("latent_scale_shift_seed1.json", "scale_shift")
PAIRED_RUNS = dict(hue_angle=HUE_RUN, training_seed=SEED_RUN, scale_shift=SCALE_RUN, scale_shift_seed1=SCALE_SEED_RUN)
_SETS = ("held_out", "redraw", "seen")  # the three readings of a paired run, as _paired_runs names them


def _mae_ratio(groups: dict, group: str) -> float:
    return groups[group]["mae"] / groups[group]["mae_shuffled"]


def _training_minutes(run: dict) -> float:
    return int(re.search(r"(\d+) s of training", run["trained"]["record"]).group(1)) / 60


@pytest.mark.parametrize("run", PAIRED_RUNS)
@pytest.mark.parametrize("index", range(8))
def test_each_paired_table_is_the_measured_one(run, index):
    """The README's tables of a run beside the shipped model (the hue as an angle, training seed 1,
    adaptive GroupNorm from seeds 0 and 1), row by row."""
    _says(paired_rows(*PAIRED_RUNS[run])[index])


def _assert_is_the_shipped_model(shipped: dict) -> None:
    """A paired-run file's "shipped" scores are those of the checkpoint the protocol's file measured (at w = 2)."""
    assert shipped["held_out"]["fidelity"] == _latent_w2()["latent (256 px)"]["fidelity"]
    assert shipped["held_out_redraw"] == _result("latent_min_snr.json")["held_out_redraw"]["min_snr"]
    assert shipped["training_requests"]["groups"] == _training_request_groups("latent_training_requests.json")


def _assert_a_trial_of_the_shipped_recipe(run: dict) -> None:
    """A paired-run file: its "shipped" side is the shipped model, and its run has the shipped run's
    loss weighting, epochs and steps (what it changed is checked by the caller)."""
    shipped_run = _result("latent_min_snr.json")["trained"]
    _assert_is_the_shipped_model(run["shipped"])
    assert run["trained"]["snr_gamma"] == shipped_run["snr_gamma"]
    assert run["trained"]["steps"] == shipped_run["steps"] and run["trained"]["epochs"] == shipped_run["epochs"]


def test_the_shipped_side_of_the_hue_angle_run_is_the_shipped_model():
    """The file's "shipped" scores are those of the checkpoint the protocol's file measured."""
    run = _result("latent_hue_angle.json")
    _assert_a_trial_of_the_shipped_recipe(run)
    assert run["trained"]["cond_angles"] == [0]


def test_the_hue_angle_reading_is_what_its_numbers_say():
    run = _result("latent_hue_angle.json")
    angle, shipped = _paired_runs(*HUE_RUN)
    hue, hue_shipped = run["hue_angle"]["held_out"]["dominant_hue"], run["shipped"]["held_out"]["dominant_hue"]
    # the short way round falls; the linear way does not; the share past half a turn stays
    assert hue["circular_mae"] < hue_shipped["circular_mae"] and hue["mae"] >= hue_shipped["mae"]
    _says(f"its error the short way round falls from {hue_shipped['circular_mae']:.3f} to {hue['circular_mae']:.3f}")
    _says(f"does not fall ({hue['mae']:.3f} against {hue_shipped['mae']:.3f})")
    _says(
        f"{hue['share_past_half_a_turn']:.0%} of the images still miss by more than half a turn "
        f"(shipped: {hue_shipped['share_past_half_a_turn']:.0%})"
    )
    # COLOR's ratio: a little lower on every set, above 0.6 on every one
    ratio = [_mae_ratio(angle[k], "COLOR") for k in _SETS]
    ratio_shipped = [_mae_ratio(shipped[k], "COLOR") for k in _SETS]
    falls = [b - a for a, b in zip(ratio, ratio_shipped)]
    assert all(0.005 <= f < 0.025 for f in falls) and all(r > 0.6 for r in ratio)
    _says(
        f"falls by 0.01 to 0.02 on each set of requests ({_listed(f'{r:.3f}' for r in ratio)} against "
        f"{_listed(f'{r:.3f}' for r in ratio_shipped)}) and stays above the goal's 0.6 on every one"
    )
    # SHAPE and TOPOLOGY fall on most readings, TOPOLOGY most on the protocol's seeds
    moves = [angle[k][g]["corr"] - shipped[k][g]["corr"] for k in _SETS for g in ("SHAPE", "TOPOLOGY")]
    topo = angle["held_out"]["TOPOLOGY"]["corr"] - shipped["held_out"]["TOPOLOGY"]["corr"]
    assert topo == min(moves)
    _says(
        f"SHAPE and TOPOLOGY fall on {sum(m < 0 for m in moves)} of the {len(moves)} readings, TOPOLOGY by "
        f"{-topo:.2f} on the protocol's seeds"
    )
    # run to run: the largest difference of a group correlation on the same requests and noise
    widest = max(abs(angle[k][g]["corr"] - shipped[k][g]["corr"]) for k in _SETS for g in GROUPS)
    _says(f"differ by up to {widest:.2f} in a group correlation on the same requests and noise")
    _says(f"weighting; {_training_minutes(run):.0f} minutes on two threads)")


# -- two runs of the recipe: the training seed -------------------------------------------------------


def test_the_training_seed_run_is_the_shipped_recipe_with_another_seed():
    run = _result(SEED_RUN[0])
    _assert_a_trial_of_the_shipped_recipe(run)
    assert run["trained"]["seed"] == 1
    _says(f"The run took {_training_minutes(run):.0f} minutes on two threads")


def test_the_training_seed_reading_is_what_its_numbers_say():
    run = _result(SEED_RUN[0])
    other, shipped = _paired_runs(*SEED_RUN)
    widest = max((abs(other[k][g]["corr"] - shipped[k][g]["corr"]), g) for k in _SETS for g in GROUPS)
    _says(f"differ by up to {widest[0]:.2f} in a group correlation on the same requests and noise ({widest[1]})")
    draws = max(abs(shipped["held_out"][g]["corr"] - shipped["redraw"][g]["corr"]) for g in GROUPS)
    assert draws < widest[0]  # "the training run is the larger of the two noises"
    _says(f"Two draws of the same requests from the shipped model differ by up to {draws:.2f}")
    # COLOR met on every set by seed 1, missed on every set by the shipped model
    ratios = [_mae_ratio(other[k], "COLOR") for k in _SETS]
    ratios_shipped = [_mae_ratio(shipped[k], "COLOR") for k in _SETS]
    assert max(ratios) <= 0.6 < min(ratios_shipped)
    _says(
        f"MAE ratios {_listed(f'{r:.3f}' for r in ratios)} against the shipped model's "
        f"{_listed(f'{r:.3f}' for r in ratios_shipped)}"
    )
    past = run["other_seed"]["held_out"]["dominant_hue"]["share_past_half_a_turn"]
    past_shipped = run["shipped"]["held_out"]["dominant_hue"]["share_past_half_a_turn"]
    _says(f"more than half a turn on {past:.0%} of the images instead of {past_shipped:.0%}")
    # SHAPE and TOPOLOGY missed on every set; LIGHTING's error missed on the protocol's seeds
    for k in _SETS:
        assert not _group_goals(other[k])["SHAPE correlation"] and not _group_goals(other[k])["TOPOLOGY correlation"], k
    line = {g: other["held_out"][g]["corr_shuffled"] + 0.2 for g in ("SHAPE", "TOPOLOGY")}
    _says(
        f"on the protocol's seeds {other['held_out']['SHAPE']['corr']:.2f} against {line['SHAPE']:.2f} and "
        f"{other['held_out']['TOPOLOGY']['corr']:.2f} against {line['TOPOLOGY']:.2f} (shuffled + 0.2)"
    )
    light = _mae_ratio(other["held_out"], "LIGHTING")
    assert light > 0.6
    _says(f"LIGHTING's error misses on the protocol's seeds ({light:.3f})")
    # what both runs hold: MATERIAL's correlation goal and realism below photo-32's
    fd32 = _latent_w2()["photo-32 upsampled to 256"]["fd_vs_held_out"]
    for groups, fd in (
        (other["held_out"], run["other_seed"]["held_out"]["fd_vs_held_out"]),
        (shipped["held_out"], run["shipped"]["held_out"]["fd_vs_held_out"]),
    ):
        assert groups["MATERIAL"]["corr"] >= groups["MATERIAL"]["corr_shuffled"] + 0.2 and fd < fd32
    _says("MATERIAL's correlation and the realism goal hold in both runs, and neither meets all of the goals")
    _says(
        "lands on the other side of all four goals at the line: it meets COLOR's error and misses SHAPE's, "
        "TOPOLOGY's and LIGHTING's error"
    )


# -- adaptive GroupNorm: a trial on the shipped recipe ----------------------------------------------


def test_the_scale_shift_run_is_the_shipped_recipe_with_adaptive_group_norm():
    from course_utils import latent
    from course_utils.unet import build_unet, count_parameters

    run = _result(SCALE_RUN[0])
    _assert_a_trial_of_the_shipped_recipe(run)
    assert run["trained"]["scale_shift"] is True
    _says(f"weighting; {_training_minutes(run):.0f} minutes on two threads, about two of them beside tests)")
    config = lambda on: latent.latent_model_config(8, 32, base_channels=latent.LATENT_WIDTH, scale_shift=on)  # noqa: E731
    plain, adaptive = (count_parameters(build_unet(config(on))) for on in (False, True))
    _says(f"It adds {adaptive - plain:,} parameters ({adaptive / 1e6:.2f}M against {plain / 1e6:.2f}M)")


def test_the_scale_shift_reading_is_what_its_numbers_say():
    run = _result(SCALE_RUN[0])
    trial, shipped = _paired_runs(*SCALE_RUN)
    # COLOR's and LIGHTING's errors met on every reading; no other run met both on all three
    for g in ("COLOR", "LIGHTING"):
        ratios = [_mae_ratio(trial[k], g) for k in _SETS]
        assert max(ratios) <= 0.6
        _says(f"{_listed(f'{r:.3f}' for r in ratios)} ({g})")
    before = [_mae_ratio(shipped[k], g) for g in ("COLOR", "LIGHTING") for k in _SETS]
    _says(
        f"against the shipped model's {_listed(f'{r:.3f}' for r in before[:3])} and "
        f"{_listed(f'{r:.3f}' for r in before[3:])}"
    )
    errors_met = lambda readings: all(  # noqa: E731
        _group_goals(readings[k])[f"{g} error"] for k in _SETS for g in ("COLOR", "LIGHTING")
    )
    assert errors_met(trial) and not errors_met(shipped)
    assert not any(errors_met(_paired_runs(*other)[0]) for other in (HUE_RUN, SEED_RUN))  # "the first run"
    moves = {g: [trial[k][g]["corr"] - shipped[k][g]["corr"] for k in _SETS] for g in GROUPS}
    rises = moves["COLOR"]
    _says(f"correlation rises on every set of requests, by {min(rises):.3f} to {max(rises):.3f}")
    assert all(m > 0 for g in ("COLOR", "LIGHTING", "MATERIAL") for m in moves[g])  # "rise on every set too"
    assert all(min(moves[g]) < 0 < max(moves[g]) for g in ("SHAPE", "TOPOLOGY"))  # "move both ways"
    fd = [run[key][k]["fd_vs_held_out"] for key in ("scale_shift", "shipped") for k in ("held_out", "held_out_redraw")]
    assert fd[0] < fd[2] and fd[1] < fd[3]
    _says(f"Realism improves with it: feature FD {fd[0]:.3f} and {fd[1]:.3f} against {fd[2]:.3f} and {fd[3]:.3f}")
    # TOPOLOGY misses on the protocol's seeds only; SHAPE meets everywhere, at the line on the protocol's seeds
    met = {k: _group_goals(trial[k]) for k in _SETS}
    assert [met[k]["TOPOLOGY correlation"] for k in _SETS] == [False, True, True]
    assert all(met[k]["SHAPE correlation"] for k in _SETS)
    for g in ("TOPOLOGY", "SHAPE"):
        _says(f"({trial['held_out'][g]['corr']:.2f} against {trial['held_out'][g]['corr_shuffled']:.2f} + 0.2)")
    shape = trial["held_out"]["SHAPE"]
    assert round(shape["corr"], 2) == round(round(shape["corr_shuffled"], 2) + 0.2, 2)  # "at the line"
    # the speed, in turns with the shipped model, two tries
    tries = run["seconds_per_image"]
    assert len(tries) == 2
    (first, second) = tries
    _says(
        f"{second['2 threads']['scale_shift']:.2f} s against {second['2 threads']['shipped']:.2f} s on two threads and "
        f"{second['1 thread']['scale_shift']:.2f} s against {second['1 thread']['shipped']:.2f} s on one; a first try "
        f"read {first['2 threads']['scale_shift']:.2f} s against {first['2 threads']['shipped']:.2f} s and "
        f"{first['1 thread']['scale_shift']:.2f} s against {first['1 thread']['shipped']:.2f} s"
    )
    ratio = {t: [x[t]["scale_shift"] / x[t]["shipped"] for x in tries] for t in ("2 threads", "1 thread")}
    assert all(abs(r - 1) <= 0.11 for rs in ratio.values() for r in rs)  # "within about a tenth"
    assert min(ratio["2 threads"]) < 1 < max(ratio["1 thread"])  # "in both directions"
    _says(
        f"Ratios {_listed(f'{r:.2f}' for r in ratio['2 threads'])} on two threads, "
        f"{_listed(f'{r:.2f}' for r in ratio['1 thread'])} on one"
    )
    # the rule: every goal on all three readings, or the shipped model stays
    counts = [sum(sum(_group_goals(readings[k]).values()) for k in _SETS) for readings in (trial, shipped)]
    assert counts[0] < 3 * 7
    _says(f"it meets {counts[0]} of the 21 group goals, the shipped model {counts[1]}")
    other, shipped_again = _paired_runs(*SEED_RUN)
    seed_topology = max(abs(other[k]["TOPOLOGY"]["corr"] - shipped_again[k]["TOPOLOGY"]["corr"]) for k in _SETS)
    _says(f"differ by up to {seed_topology:.2f} in TOPOLOGY with the training seed alone")


# -- adaptive GroupNorm from a second training seed, and the four runs side by side --------------------


def test_the_second_scale_shift_run_is_the_first_with_another_seed():
    run, first = _result(SCALE_SEED_RUN[0]), _result(SCALE_RUN[0])
    _assert_a_trial_of_the_shipped_recipe(run)
    assert run["trained"]["scale_shift"] is True and run["trained"]["seed"] == 1
    logged = ("seed", "record", "epoch_losses", "build_seconds_this_call")  # what a run logs, beyond its settings
    assert {k: v for k, v in run["trained"].items() if k not in logged} == {
        k: v for k, v in first["trained"].items() if k not in logged
    }
    _says(f"1 ({_training_minutes(run):.0f} minutes on two threads)")


def _line(groups: dict, g: str) -> str:
    return f"({groups[g]['corr']:.2f} against {groups[g]['corr_shuffled']:.2f} + 0.2)"


def test_the_second_scale_shift_reading_is_what_its_numbers_say():
    second, shipped = _paired_runs(*SCALE_SEED_RUN)
    first = _paired_runs(*SCALE_RUN)[0]
    met = {k: _group_goals(second[k]) for k in _SETS}
    colour = [_mae_ratio(second[k], "COLOR") for k in _SETS]
    assert not any(met[k]["COLOR error"] for k in _SETS)
    _says(f"It misses COLOR's error goal on every reading (MAE ratios {_listed(f'{r:.3f}' for r in colour)})")
    assert not met["held_out"]["LIGHTING error"]
    _says(f"on the protocol's seeds ({_mae_ratio(second['held_out'], 'LIGHTING'):.3f}); the first run met both")
    assert all(_group_goals(first[k])[f"{g} error"] for k in _SETS for g in ("COLOR", "LIGHTING"))
    assert not met["held_out"]["TOPOLOGY correlation"]
    _says(f"TOPOLOGY misses on the protocol's seeds again {_line(second['held_out'], 'TOPOLOGY')}")
    assert met["held_out"]["SHAPE correlation"] and not met["redraw"]["SHAPE correlation"]
    shape = second["held_out"]["SHAPE"]
    assert shape["corr"] - shape["corr_shuffled"] - 0.2 >= 0.05  # "with room"
    _says(f"SHAPE meets there with room {_line(second['held_out'], 'SHAPE')}")
    _says(f"misses on the other noise {_line(second['redraw'], 'SHAPE')}")
    counts = [sum(sum(_group_goals(r[k]).values()) for k in _SETS) for r in (second, shipped)]
    assert counts[0] == counts[1]
    _says(f"it meets as many of the 21 group goals ({counts[0]})")
    fd = [
        _result(SCALE_SEED_RUN[0])[key][k]["fd_vs_held_out"]
        for key in ("scale_shift", "shipped")
        for k in ("held_out", "held_out_redraw")
    ]
    _says(f"feature FD is {fd[0]:.3f} and {fd[1]:.3f} against {fd[2]:.3f} and {fd[3]:.3f}")


def _four_runs() -> dict[str, tuple[dict, dict]]:
    """The two runs of the shipped recipe (addition) and of adaptive GroupNorm: (group scores per
    reading, the run's part of its file)."""
    seed_file, scale_file, scale_seed_file = (_result(n[0]) for n in (SEED_RUN, SCALE_RUN, SCALE_SEED_RUN))
    return {
        "addition, seed 0 (shipped)": (_paired_runs(*SEED_RUN)[1], seed_file["shipped"]),
        "addition, seed 1": (_paired_runs(*SEED_RUN)[0], seed_file["other_seed"]),
        "scale and shift, seed 0": (_paired_runs(*SCALE_RUN)[0], scale_file["scale_shift"]),
        "scale and shift, seed 1": (_paired_runs(*SCALE_SEED_RUN)[0], scale_seed_file["scale_shift"]),
    }


@pytest.mark.parametrize("index", range(4))
def test_the_four_run_table_is_the_measured_one(index):
    name, (groups, run) = list(_four_runs().items())[index]
    ratios = lambda g: " / ".join(f"{_mae_ratio(groups[k], g):.3f}" for k in _SETS)  # noqa: E731
    fd = f"{run['held_out']['fd_vs_held_out']:.3f} / {run['held_out_redraw']['fd_vs_held_out']:.3f}"
    _says(f"| {name} | {_goals_met(groups)} | {ratios('COLOR')} | {ratios('LIGHTING')} | {fd} |")


def test_the_four_runs_read_as_the_readme_says():
    runs = _four_runs()
    assert not any(all(_group_goals(groups["held_out"]).values()) for groups, _ in runs.values())
    _says("None of the four runs meets all seven group goals on the protocol's seeds")
    (add0, add0_run), (add1, add1_run), (ss0, ss0_run), (ss1, ss1_run) = runs.values()
    # each recipe's average over its two runs: (addition, adaptive GroupNorm)
    corr = {
        (k, g): tuple((a[k][g]["corr"] + b[k][g]["corr"]) / 2 for a, b in ((add0, add1), (ss0, ss1)))
        for k in _SETS
        for g in GROUPS
    }
    ahead = sum(ss > add for add, ss in corr.values())
    _says(f"adaptive GroupNorm is ahead of the addition on {ahead} of the {len(corr)} group correlations")
    for k in _SETS:  # "on all six error ratios"
        for g in ("COLOR", "LIGHTING"):
            assert _mae_ratio(ss0[k], g) + _mae_ratio(ss1[k], g) < _mae_ratio(add0[k], g) + _mae_ratio(add1[k], g)
    for k in ("held_out", "held_out_redraw"):  # "and on both FDs"
        fd = [run[k]["fd_vs_held_out"] for run in (add0_run, add1_run, ss0_run, ss1_run)]
        assert fd[2] + fd[3] < fd[0] + fd[1], k
    gap, (k, g) = max((abs(ss - add), key) for key, (add, ss) in corr.items())
    named = {"held_out": "protocol seeds", "redraw": "other noise", "seen": "training requests"}
    _says(f"gap between the averages, {gap:.2f} ({g}, {named[k]})")
    spread = lambda a, b: max(abs(a[k][g]["corr"] - b[k][g]["corr"]) for k in _SETS for g in GROUPS)  # noqa: E731
    ss_spread, add_spread = spread(ss0, ss1), spread(add0, add1)
    assert gap <= ss_spread < add_spread  # "no wider than ... and narrower than ..."
    _says(f"runs of adaptive GroupNorm (up to {ss_spread:.2f}) and narrower than between the two runs of the addition")
    _says(f"(up to {add_spread:.2f}): a likely gain, of the size of the run-to-run noise")


def test_the_goals_paragraph_reads_both_runs_of_adaptive_group_norm():
    first, second = _paired_runs(*SCALE_RUN)[0], _paired_runs(*SCALE_SEED_RUN)[0]
    errors = lambda r, k: [_group_goals(r[k])[f"{g} error"] for g in ("COLOR", "LIGHTING")]  # noqa: E731
    assert all(all(errors(first, k)) for k in _SETS)  # "with a margin on every reading in its first run"
    assert all(_mae_ratio(first[k], g) <= 0.6 - 0.005 for k in _SETS for g in ("COLOR", "LIGHTING"))
    assert not any(errors(second, "held_out"))  # "misses both on the protocol's seeds in its second"
    assert not any(_group_goals(r["held_out"])["TOPOLOGY correlation"] for r in (first, second))
    _says("neither of its runs meets TOPOLOGY's goal on the protocol's seeds")


# -- when the request acts: a request swapped after k of the 50 steps -----------------------------------


def _swap() -> dict:
    return _result("latent_condition_swap.json")


@pytest.mark.parametrize("k", ["0", "2", "5", "10", "20", "50"])
def test_the_condition_swap_table_is_the_measured_one(k):
    row = _swap()["switch"][k]
    _says(f"| {k} | " + " | ".join(f"{row[g]['A']:.2f} / {row[g]['B']:.2f}" for g in GROUPS) + " |")


def test_the_condition_swap_reading_is_what_its_numbers_say():
    from course_utils import photos

    run = _swap()
    sw = {int(k): v for k, v in run["switch"].items()}
    # k = 50 is the training-request reading, image for image
    seen = _training_request_groups("latent_training_requests.json")
    assert all(sw[50][g]["A"] == seen[g]["corr"] for g in GROUPS)
    assert run["n"] == 256 and run["guidance"] == 2.0
    times = photos.ddim_times(50)
    _says(f"start at t = {_listed(f'{float(times[k]):.2g}' for k in (2, 5, 10, 20))}")
    pair = lambda k, g: f"({sw[k][g]['A']:.2f} / {sw[k][g]['B']:.2f})"  # noqa: E731
    # coarse to fine: COLOR even after 5, LIGHTING even after 10, MATERIAL still B's after 10
    assert (
        abs(sw[5]["COLOR"]["A"] - sw[5]["COLOR"]["B"]) <= 0.05
        and abs(sw[10]["LIGHTING"]["A"] - sw[10]["LIGHTING"]["B"]) <= 0.05
    )
    assert sw[10]["MATERIAL"]["B"] > sw[10]["MATERIAL"]["A"]
    _says(
        f"after 5 steps COLOR follows A and B about equally {pair(5, 'COLOR')}, after 10 LIGHTING does "
        f"{pair(10, 'LIGHTING')}, and MATERIAL, the texture, still follows B more after 10 {pair(10, 'MATERIAL')}"
    )
    late = [sw[20][g]["B"] for g in ("COLOR", "LIGHTING", "MATERIAL")]
    assert min(late) >= 0.1  # "not settled"
    _says(f"after 20 of the 50, B still reaches {_listed(f'{b:.2f}' for b in late)} in COLOR, LIGHTING and MATERIAL")
    weak = max(sw[k][g][r] for k in sw for g in ("SHAPE", "TOPOLOGY") for r in ("A", "B"))
    _says(f"SHAPE and TOPOLOGY follow neither request by more than {weak:.2f} at any k")
    shape = [sw[k]["SHAPE"]["A"] for k in (5, 10, 20, 50)]
    assert all(0 <= b - a <= 0.1 for a, b in zip(shape, shape[1:]))  # grows, by about a standard error a time
    _says(
        f"(SHAPE {shape[0]:.2f} after 5 steps, {shape[1]:.2f} after 10, {shape[2]:.2f} after 20, "
        f"{shape[3]:.2f} after 50)"
    )
    other = {g: sw[0][g]["B"] for g in ("SHAPE", "TOPOLOGY")}
    moved = max(abs(other[g] - sw[50][g]["A"]) for g in other)
    _says(
        f"read SHAPE {other['SHAPE']:.2f} and TOPOLOGY {other['TOPOLOGY']:.2f}, against {sw[50]['SHAPE']['A']:.2f} "
        f"and {sw[50]['TOPOLOGY']['A']:.2f}: the pairing of noise and request alone moves a group correlation over "
        f"256 images by {moved:.2f}"
    )


# -- the trials at a glance: every training run of the latent recipe, on the protocol's reading ----------

GLANCE = [  # (the README's name, the results file, the path to the protocol's reading in it)
    ("simple loss (shipped before Min-SNR)", "latent_photo_eval_simple_loss.json", ("latent (256 px)",)),
    ("Min-SNR weighting, seed 0 (**shipped**)", "latent_photo_eval_w2.json", ("latent (256 px)",)),
    ("the hue as an angle", HUE_RUN[0], ("hue_angle", "held_out")),
    ("training seed 1", SEED_RUN[0], ("other_seed", "held_out")),
    ("adaptive GroupNorm, seed 0", SCALE_RUN[0], ("scale_shift", "held_out")),
    ("adaptive GroupNorm, seed 1", SCALE_SEED_RUN[0], ("scale_shift", "held_out")),
    ("zoomed crops, on the simple loss", "latent_crop_variants.json", ("held_out_protocol", "latent (256 px)")),
    ("2 more epochs, on the simple loss", "latent_longer_run.json", ("held_out",)),
]


def _glance() -> dict[str, dict]:
    runs = {}
    for name, file, path in GLANCE:
        reading = _result(file)
        for key in path:
            reading = reading[key]
        runs[name] = reading
    return runs


def _goal_columns(groups: dict) -> tuple[str, str, int]:
    """What the goal tables show of one reading: COLOR / LIGHTING MAE over shuffled (three places),
    SHAPE / TOPOLOGY correlation, and the group goals met."""
    return (
        f"{_mae_ratio(groups, 'COLOR'):.3f} / {_mae_ratio(groups, 'LIGHTING'):.3f}",
        f"{groups['SHAPE']['corr']:.2f} / {groups['TOPOLOGY']['corr']:.2f}",
        sum(_group_goals(groups).values()),
    )


def glance_rows() -> list[str]:
    rows = []
    for name, r in _glance().items():
        ratios, outline, met = _goal_columns(r["fidelity"])
        rows.append(f"| {name} | {ratios} | {outline} | {r['fd_vs_held_out']:.3f} | {met} |")
    return rows


@pytest.mark.parametrize("index", range(len(GLANCE)))
def test_the_trials_at_a_glance_table_is_the_measured_one(index):
    _says(glance_rows()[index])


def test_the_trials_at_a_glance_read_as_the_readme_says():
    runs = _glance()
    assert runs["Min-SNR weighting, seed 0 (**shipped**)"]["fidelity"] == _latent_w2()["latent (256 px)"]["fidelity"]
    missed = {name: [g for g, met in _group_goals(r["fidelity"]).items() if not met] for name, r in runs.items()}
    assert all(missed.values())  # "No run meets all seven"
    six = {name: m for name, m in missed.items() if len(m) == 1}
    assert six == {
        "Min-SNR weighting, seed 0 (**shipped**)": ["COLOR error"],
        "adaptive GroupNorm, seed 0": ["TOPOLOGY correlation"],
    }
    assert max(7 - len(m) for m in missed.values()) == 6
    _says(
        "No run meets all seven. The two that meet six miss different goals: the shipped model COLOR's error, "
        "adaptive GroupNorm's first run TOPOLOGY's correlation."
    )


# -- guidance 2, 3 and 4 on the 256 training requests ----------------------------------------------------


def _sweep_256() -> dict:
    return _result("latent_guidance_sweep_256.json")["guidance_scales"]


def guidance_256_rows() -> list[str]:
    rows = []
    for w, r in _sweep_256().items():
        g = r["groups"]
        ratios, outline, met = _goal_columns(g)
        errors = f"{g['COLOR']['mae']:.3f} / {g['LIGHTING']['mae']:.3f}"
        rows.append(f"| {float(w):g} | {ratios} | {errors} | {r['corr']:.3f} | {outline} | {r['fd']:.3f} | {met} |")
    return rows


@pytest.mark.parametrize("index", range(3))
def test_the_guidance_256_table_is_the_measured_one(index):
    _says(guidance_256_rows()[index])


def test_the_guidance_256_reading_is_what_its_numbers_say():
    sweep = _sweep_256()
    assert sweep["2.0"]["groups"] == _training_request_groups("latent_training_requests.json")  # "reproduces"
    two, three, four = (sweep[w] for w in ("2.0", "3.0", "4.0"))
    met = {w: sum(_group_goals(r["groups"]).values()) for w, r in sweep.items()}
    assert met["3.0"] == 7 and met["3.0"] == max(met.values())
    _says(f"meets all seven group goals on these requests, against {met['2.0']} at w = 2")
    c2, c3 = two["groups"]["COLOR"], three["groups"]["COLOR"]
    l2, l3 = two["groups"]["LIGHTING"], three["groups"]["LIGHTING"]
    assert round(c2["mae"], 3) == round(c3["mae"], 3) and l3["mae"] > l2["mae"]
    assert c3["mae_shuffled"] > c2["mae_shuffled"]
    _says(
        f"COLOR's MAE stays {c3['mae']:.3f} and LIGHTING's rises from {l2['mae']:.3f} to {l3['mae']:.3f}. The ratios "
        f"fall because the shuffled baseline rises (COLOR {c2['mae_shuffled']:.3f} to {c3['mae_shuffled']:.3f})"
    )
    assert all(three["groups"][g]["corr"] > two["groups"][g]["corr"] for g in GROUPS)  # "the correlations ... rise"
    _says(f"rise (mean {two['corr']:.3f} to {three['corr']:.3f})")
    assert two["fd"] < three["fd"] < four["fd"]
    _says(f"Realism pays: feature FD {two['fd']:.3f} to {three['fd']:.3f} (w = 4: {four['fd']:.3f})")


# -- guidance 3 on the held-out requests: the protocol's reading and a second draw -----------------------


def _w3() -> tuple[dict, dict]:
    return _latent(), _result("latent_photo_eval_redraw.json")


def w3_rows() -> list[str]:
    w3, w3_redraw = _w3()
    w2 = _latent_w2()
    w2_redraw = _result("latent_min_snr.json")["held_out_redraw"]["min_snr"]
    held = {2: w2["latent (256 px)"], 3: w3["latent (256 px)"]}
    again = {2: w2_redraw, 3: w3_redraw["latent (256 px)"]}
    p32 = {2: w2["photo-32 upsampled to 256"], 3: w3["photo-32 upsampled to 256"]}
    speed = {2: w2["latent seconds per 256px image, batch 1"], 3: w3["latent seconds per 256px image, batch 1"]}
    goals = {
        w: f"{sum(_group_goals(held[w]['fidelity']).values())} / {sum(_group_goals(again[w]['fidelity']).values())}"
        for w in (2, 3)
    }
    return [
        f"| group correlations, protocol seeds | {_corrs(held[2]['fidelity'])} | {_corrs(held[3]['fidelity'])} |",
        f"| the same requests, other noise (seed {w3_redraw['protocol']['seed']}) | {_corrs(again[2]['fidelity'])} "
        f"| {_corrs(again[3]['fidelity'])} |",
        f"| COLOR / LIGHTING MAE over shuffled, protocol seeds | {_goal_columns(held[2]['fidelity'])[0]} "
        f"| {_goal_columns(held[3]['fidelity'])[0]} |",
        f"| the same, other noise | {_goal_columns(again[2]['fidelity'])[0]} "
        f"| {_goal_columns(again[3]['fidelity'])[0]} |",
        f"| feature FD to held-out photos, protocol seeds / other noise | {held[2]['fd_vs_held_out']:.3f} / "
        f"{again[2]['fd_vs_held_out']:.3f} | {held[3]['fd_vs_held_out']:.3f} / {again[3]['fd_vs_held_out']:.3f} |",
        f"| photo-32 enlarged, same guidance: FD / SHAPE / TOPOLOGY | {p32[2]['fd_vs_held_out']:.3f} / "
        f"{p32[2]['fidelity']['SHAPE']['corr']:.2f} / {p32[2]['fidelity']['TOPOLOGY']['corr']:.2f} "
        f"| {p32[3]['fd_vs_held_out']:.3f} / {p32[3]['fidelity']['SHAPE']['corr']:.2f} / "
        f"{p32[3]['fidelity']['TOPOLOGY']['corr']:.2f} |",
        f"| seconds per image, two threads / one | {speed[2]['2 threads']:.2f} / {speed[2]['1 thread']:.2f} "
        f"| {speed[3]['2 threads']:.2f} / {speed[3]['1 thread']:.2f} |",
        f"| group goals met of 7, protocol seeds / other noise | {goals[2]} | {goals[3]} |",
    ]


@pytest.mark.parametrize("index", range(8))
def test_the_w3_table_is_the_measured_one(index):
    _says(w3_rows()[index])


def test_the_w3_protocol_is_the_protocol_at_guidance_3():
    w3, w3_redraw = _w3()
    from course_utils import latent

    assert latent.GUIDANCE == 3.0
    assert w3["protocol"] == dict(_latent_w2()["protocol"], guidance=3.0)
    assert w3_redraw["protocol"] == dict(n=256, steps=50, guidance=3.0, seed=1000)
    assert w3["fd_floor_real_vs_real"] == _latent_w2()["fd_floor_real_vs_real"]


def test_the_w3_reading_is_what_its_numbers_say():
    w3, w3_redraw = _w3()
    held, again = w3["latent (256 px)"], w3_redraw["latent (256 px)"]
    f, g = held["fidelity"], again["fidelity"]
    assert all(_group_goals(f).values())
    p32 = w3["photo-32 upsampled to 256"]
    assert held["fd_vs_held_out"] < p32["fd_vs_held_out"]
    assert all(f[k]["corr"] > p32["fidelity"][k]["corr"] for k in ("SHAPE", "TOPOLOGY"))
    two = w3["latent seconds per 256px image, batch 1"]["2 threads"]
    assert two <= 3.0
    margin = {k: f[k]["corr"] - f[k]["corr_shuffled"] - 0.2 for k in ("SHAPE", "TOPOLOGY")}
    _says(
        f"COLOR's and LIGHTING's MAE ratios {_mae_ratio(f, 'COLOR'):.3f} and {_mae_ratio(f, 'LIGHTING'):.3f}, "
        f"SHAPE {margin['SHAPE']:.2f} and TOPOLOGY {margin['TOPOLOGY']:.2f} above their lines, FD "
        f"{held['fd_vs_held_out']:.3f} against photo-32's {p32['fd_vs_held_out']:.3f} at the same guidance, and an "
        f"image in {two:.2f} s on two threads"
    )
    missed = [k for k, met in _group_goals(g).items() if not met]
    assert missed == ["LIGHTING error"]
    _says(f"On the second draw it meets six: LIGHTING's error misses by a hair ({_mae_ratio(g, 'LIGHTING'):.3f})")
    w2_redraw = _result("latent_min_snr.json")["held_out_redraw"]["min_snr"]
    fd = (
        held["fd_vs_held_out"],
        again["fd_vs_held_out"],
        _latent_w2()["latent (256 px)"]["fd_vs_held_out"],
        w2_redraw["fd_vs_held_out"],
    )
    assert fd[0] > fd[2] and fd[1] > fd[3]
    _says(f"FD {fd[0]:.3f} and {fd[1]:.3f} against {fd[2]:.3f} and {fd[3]:.3f}")


# -- the trials read again at w = 3, beside the shipped model at w = 3 -------------------------------------

W3_TRIALS = {  # the README's name -> the paired-run file of its trial at w = 2, and its key there
    "training seed 1": SEED_RUN,
    "adaptive GroupNorm, seed 0": SCALE_RUN,
    "adaptive GroupNorm, seed 1": SCALE_SEED_RUN,
    "the hue as an angle": HUE_RUN,
}
_SHIPPED = "Min-SNR weighting, seed 0 (**shipped**)"


def _trials_w3() -> dict[str, tuple[dict, dict]]:
    """Per run, the shipped model first: its (protocol seeds, other noise) readings at w = 3."""
    runs = {_SHIPPED: (_latent()["latent (256 px)"], _result("latent_photo_eval_redraw.json")["latent (256 px)"])}
    file = _result("latent_trials_w3.json")["runs"]
    runs.update({name: (file[name]["held_out"], file[name]["held_out_redraw"]) for name in W3_TRIALS})
    return runs


def _trials_w2() -> dict[str, tuple[dict, dict]]:
    """The same runs' (protocol seeds, other noise) readings at w = 2, from their paired files."""
    shipped = _result(SEED_RUN[0])["shipped"]
    runs = {_SHIPPED: (shipped["held_out"], shipped["held_out_redraw"])}
    for name, (file, key) in W3_TRIALS.items():
        run = _result(file)[key]
        runs[name] = (run["held_out"], run["held_out_redraw"])
    return runs


def _over_line(groups: dict, g: str) -> float:
    return _corr_over_line(groups[g]["corr"], groups[g]["corr_shuffled"])


def trials_w3_rows() -> list[str]:
    rows, at_w2 = [], _trials_w2()
    for name, (a, b) in _trials_w3().items():
        fa, fb = a["fidelity"], b["fidelity"]
        met = f"{sum(_group_goals(fa).values())} / {sum(_group_goals(fb).values())}"
        met_w2 = " / ".join(str(sum(_group_goals(r["fidelity"]).values())) for r in at_w2[name])
        ratio = {g: f"{_mae_ratio(fa, g):.3f} / {_mae_ratio(fb, g):.3f}" for g in ("COLOR", "LIGHTING")}
        line = {g: f"{_over_line(fa, g):+.2f} / {_over_line(fb, g):+.2f}" for g in ("SHAPE", "TOPOLOGY")}
        fd = f"{a['fd_vs_held_out']:.3f} / {b['fd_vs_held_out']:.3f}"
        rows.append(
            f"| {name} | {met} ({met_w2}) | {ratio['COLOR']} | {ratio['LIGHTING']} | {line['SHAPE']} "
            f"| {line['TOPOLOGY']} | {fd} |"
        )
    return rows


def test_the_trials_at_w3_are_the_trials_runs_at_the_protocols_guidance():
    file = _result("latent_trials_w3.json")
    assert file["protocol"] == dict(n=256, steps=50, guidance=3.0, seeds=[0, 1000])
    assert list(file["runs"]) == list(W3_TRIALS)
    for name, (trial_file, _) in W3_TRIALS.items():
        assert file["runs"][name]["trial"] == trial_file, name
    _assert_is_the_shipped_model(_result(SEED_RUN[0])["shipped"])  # the w = 2 side the table brackets


@pytest.mark.parametrize("index", range(len(W3_TRIALS) + 1))
def test_the_trials_at_w3_table_is_the_measured_one(index):
    _says(trials_w3_rows()[index])


def test_the_trials_at_w3_read_as_the_readme_says():
    w3, w2 = _trials_w3(), _trials_w2()
    met = {name: [_group_goals(r["fidelity"]) for r in readings] for name, readings in w3.items()}
    met_w2 = {name: [_group_goals(r["fidelity"]) for r in readings] for name, readings in w2.items()}
    for name in w3:  # "at least as many group goals as w = 2" on every reading
        assert all(sum(a.values()) >= sum(b.values()) for a, b in zip(met[name], met_w2[name])), name
    rises = [a["fd_vs_held_out"] - b["fd_vs_held_out"] for name in w3 for a, b in zip(w3[name], w2[name])]
    assert min(rises) > 0
    _says(f"it costs realism: the feature FD rises by {min(rises):.2f} to {max(rises):.2f}")
    readings = [(name, r["fidelity"], goals) for name in w3 for r, goals in zip(w3[name], met[name])]
    count = lambda goal: sum(goals[goal] for _, _, goals in readings)  # noqa: E731
    assert count("COLOR error") == len(readings) == 10
    worst = max(_mae_ratio(f, "COLOR") for _, f, _ in readings)
    _says(
        f"COLOR's error goal is met on all ten readings (ratios up to {worst:.3f}); LIGHTING's on "
        f"{count('LIGHTING error')} and SHAPE's on {count('SHAPE correlation')}"
    )
    topology = [(name, i) for name in w3 for i, goals in enumerate(met[name]) if goals["TOPOLOGY correlation"]]
    assert topology == [(_SHIPPED, 0), (_SHIPPED, 1), ("adaptive GroupNorm, seed 0", 1)]
    _says(
        f"TOPOLOGY's is met on {len(topology)} of the 10: both of the shipped model's and one of adaptive GroupNorm's"
    )
    baselines = [f["TOPOLOGY"]["corr_shuffled"] for _, f, _ in readings]
    _says(f"(from {min(baselines):.2f} to {max(baselines):.2f} here)")
    seed1 = w3["training seed 1"][0]["fidelity"]["TOPOLOGY"]
    assert seed1["corr_shuffled"] == max(baselines)
    _says(
        f"training seed 1 reads {seed1['corr']:.2f} on the protocol's seeds against a baseline of "
        f"{seed1['corr_shuffled']:.2f}"
    )
    on_protocol = {name: sum(goals[0].values()) for name, goals in met.items()}
    assert [name for name, n in on_protocol.items() if n == 7] == [_SHIPPED]
    assert sorted(n for name, n in on_protocol.items() if name != _SHIPPED) == [5, 5, 6, 6]
    _says("but the four other runs meet five or six, so read the seven as this run's, not the recipe's")
    _says("four other runs meet five or six of the seven group goals on the protocol's seeds, and TOPOLOGY is")
