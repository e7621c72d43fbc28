"""The hue as an angle, measured: train the shipped `photo-latent` recipe (Min-SNR weighting, the same
steps, seed and cached latents) with one change, `dominant_hue` entering the network as its cosine
and sine (`UNetConfig.cond_angles`, `latent.build_latent_model(hue_as_angle=True)`), then measure it
with the capstone's protocol (256 held-out requests, DDIM 50, guidance 2), on the same requests from
other noise (seed 1000) and on the 256 training requests of `latent_photo_eval.py --guidance-sweep 2
--n 256`.

Why: the hue is an angle in turns, red at both ends of [0, 1], and a colour's chroma is close to a
point on a circle, (cos, sin) of that angle times the saturation. Given the number in [0, 1], the
feature MLP has to learn that circle; given (cos, sin), it is one linear map away, and 0.99 and 0.01
are neighbours.

The shipped model's numbers under the same seeds are read from the files that hold them
(`latent_photo_eval_w2.json`, `latent_min_snr.json`'s redraw, `latent_training_requests.json`), so the
comparison is paired image by image. The run resumes its folder when killed; its weights stay there.

    python benchmarks/latent_hue_angle.py [--run-dir runs/photo-latent-hue-angle] \\
        [--out benchmarks/results/latent_hue_angle.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the protocol's own drawing and sweep

from latent_photo_eval import paired_run_parser, train_and_compare  # noqa: E402


def main() -> None:
    args = paired_run_parser("latent_hue_angle.json", __doc__).parse_args()
    train_and_compare(
        "photo-latent-hue-angle",
        key="hue_angle",
        label="hue as an angle",
        n=args.n,
        out=args.out,
        run_dir=args.run_dir,
        summary=lambda record: dict(
            cond_angles=record["model_config"]["cond_angles"], snr_gamma=record["recipe"]["extra"].get("snr_gamma")
        ),
        hue_as_angle=True,
    )


if __name__ == "__main__":
    main()
