"""The 32 visual features: measured from pixels, each in [0, 1], the condition of the photo model.

Every image is first brought to one working form (:func:`prepare`): RGB float32 in [0, 1], resized
so that its longer side is ``WORK_SIZE`` = 128 pixels (aspect kept). Every feature is then computed
from those pixels only (NumPy, OpenCV, scikit-image) and normalised to [0, 1]. Notation:
``R, G, B`` channels; ``H, S, V`` hue (as a fraction of a turn), saturation, value;
``L*a*b*`` CIELAB with the colour difference ``dE`` (Euclidean, in Lab units);
``Y = 0.299 R + 0.587 G + 0.114 B`` the luminance; ``obj`` / ``bg`` the object mask and the rest
(:func:`object_mask`); ``clip`` clips to [0, 1]; ``squash(x, c) = x / (x + c)`` maps [0, inf) onto
[0, 1) with ``squash(c, c) = 0.5``.

==  ===================  ========  ==========================================================
 #  name                 group     meaning and formula
==  ===================  ========  ==========================================================
 0  dominant_hue         COLOR     hue (in turns) of the strongest hue-histogram peak, weights S*V; 0 if grey
 1  dominant_sat         COLOR     mean S of the pixels within 15 degrees of that hue
 2  dominant_val         COLOR     mean V of those pixels
 3  color_variety        COLOR     entropy of the 64-colour (4 levels per channel) histogram / ln 64
 4  temperature          COLOR     clip(0.5 + mean(R - B)): 1 warm (red, yellow), 0 cool (blue)
 5  sat_variation        COLOR     std(S) / 0.5
 6  color_contrast       COLOR     clip(RMS dE from the mean colour / 50)
 7  high_sat_ratio       COLOR     fraction of vivid pixels, S > 0.5 and V > 0.2
 8  specular_highlights  LIGHTING  clip(10 x fraction of obj with V > 0.9 and S < 0.2)
 9  shadow_intensity     LIGHTING  1 - P10(Y) / median(Y): how much darker the darkest tenth is
10  shadow_ratio         LIGHTING  fraction of pixels with Y < median(Y) / 2
11  brightness_var       LIGHTING  std(Y) / 0.5
12  local_contrast       LIGHTING  squash(mean |grad Y|, 0.04), grad = 3x3 Sobel / 8 (slope per pixel)
13  obj_bg_contrast      LIGHTING  clip(dE(mean obj colour, mean bg colour) / 100)
14  reflectivity         MATERIAL  (P99(Y_obj) - median(Y_obj)) / (1 - median(Y_obj))
15  transparency         MATERIAL  squash(fraction of obj within dE 20 of the mean bg colour, 0.05)
16  roughness            MATERIAL  squash(std of Y - GaussianBlur(Y, 1 px) inside obj, 0.03)
17  metallic             MATERIAL  (1 - mean S_obj) x clip(std(Y_obj) / 0.3)
18  color_uniformity     MATERIAL  1 - clip(RMS dE within obj / 50)
19  circularity          SHAPE     4 pi A / P^2 of the smoothed outer outline of the main object
20  solidity             SHAPE     object area / convex-hull area (main object)
21  spectral_entropy     SHAPE     entropy of the normalised 2-D power spectrum of Y / ln(#freqs)
22  graph_density        SHAPE     mean degree / 4 of the main object's cell graph (16x16 grid)
23  mean_curvature       SHAPE     squash(mean |kappa| r_eq, 1): 0.5 for a disk
24  curv_variance        SHAPE     squash(std(kappa r_eq), 1): 0 for a disk
25  affine_curvature     SHAPE     squash(16 pi^2 I1 - 1, 0.25), affine invariant: 0 for every ellipse
26  euler_char           TOPOLOGY  sigmoid(chi), chi = components - holes
27  genus                TOPOLOGY  squash(holes of the main object, 2)
28  num_holes            TOPOLOGY  squash(holes, 2)
29  complexity           TOPOLOGY  squash(skeleton branches - 1, 24)
30  spectral_gap         TOPOLOGY  squash(lambda_2 V 4 / pi^2, 1) of the cell graph
31  betti_1              TOPOLOGY  squash(b1, 2), b1 = rank H1 of the mask
==  ===================  ========  ==========================================================

Shape and topology need an object. :func:`object_mask` separates it from the background: the
distance of every pixel's colour to the median colours of the four image borders, thresholded
with Otsu's method, cleaned with a morphological opening and closing, specks dropped (components
under 10% of the largest), pin-holes filled (holes under 0.1% of the image). When that finds no
plausible object (under 0.2% or over 95% of the image) it falls back to Otsu on luminance (the
object is the class that touches the border less), and then to an empty mask: shape features are
0 and the topology is that of the empty set. An object that fills the frame cannot be told apart
from its background by this rule; it is a measurement, not a segmentation model.

Topology of a planar mask (foreground 8-connected, background 4-connected, so the two agree):
components ``b0``, holes ``h`` (background components that do not touch the image border and
cover at least 0.1% of it). For a subset of the plane ``b1 = h`` (Alexander duality) and the Euler
characteristic is ``chi = b0 - b1``. Thickened into a solid, each hole of a connected object is a
handle of its surface, so the main object's genus is its number of holes. The three hole counts
therefore agree on one object and differ when several objects each have holes.

Curvatures use the main object's outer outline, resampled to 256 points and smoothed by a
Gaussian taper on its Fourier coefficients (width 12 harmonics), so derivatives are exact:
``kappa = [z', z''] / |z'|^3`` with ``[a, b] = a_x b_y - a_y b_x``, and ``r_eq = sqrt(A / pi)``
makes it scale free. Curves of constant equi-affine curvature are the ellipses; the equi-affine
curvature itself needs fourth derivatives of the outline, which pixel noise swamps at this size,
so ``affine_curvature`` uses a stable affine invariant with the same zero set instead: Flusser's
first affine moment invariant ``I1 = (mu20 mu02 - mu11^2) / mu00^4`` of the filled object, which
equals ``1 / (16 pi^2)`` for every ellipse (any size, rotation or stretch) and is larger for every
other shape.
"""

from __future__ import annotations

import ast
import os
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np
import torch
from scipy.linalg import eigh
from scipy.ndimage import binary_fill_holes
from skimage.filters import threshold_otsu
from skimage.measure import find_contours
from skimage.morphology import skeletonize

from . import config
from .errors import BadRequest
from .files import atomic_path, lock, sha256_file

WORK_SIZE = 128  # longer side, in pixels, of the image every feature is computed on
MIN_SIDE = 4  # smaller images carry no measurable shape
FEATURE_VERSION = 1  # bump when a formula changes: it names the cache file

_TABLE = """
dominant_hue COLOR hue of the main colour (0-1 = 0-360 degrees; red at both ends)
dominant_sat COLOR saturation of the main colour
dominant_val COLOR brightness (HSV value) of the main colour
color_variety COLOR how many distinct colours (histogram entropy)
temperature COLOR warm (red, yellow) = 1 versus cool (blue) = 0
sat_variation COLOR spread of saturation
color_contrast COLOR spread of colours around the mean colour
high_sat_ratio COLOR fraction of vivid pixels
specular_highlights LIGHTING bright, colourless spots on the object
shadow_intensity LIGHTING how much darker the darkest tenth is than the typical pixel
shadow_ratio LIGHTING fraction of the image in shadow
brightness_var LIGHTING spread of brightness
local_contrast LIGHTING mean edge strength (gradient magnitude)
obj_bg_contrast LIGHTING colour difference between object and background
reflectivity MATERIAL how far the brightest highlights rise above the object's typical brightness
transparency MATERIAL fraction of the object coloured like the background behind it
roughness MATERIAL fine-grain texture on the object
metallic MATERIAL colourless object with strong light and dark (metal-like)
color_uniformity MATERIAL one solid colour (1) versus many (0) on the object
circularity SHAPE how round the outline is (disk = 1)
solidity SHAPE object area over its convex hull (no dents or holes = 1)
spectral_entropy SHAPE how spread the image's spatial frequencies are
graph_density SHAPE how thick and connected the object's cell graph is
mean_curvature SHAPE average bending of the outline (disk = 0.5)
curv_variance SHAPE how unevenly the outline bends (disk = 0)
affine_curvature SHAPE how far the outline is from any ellipse (ellipse = 0)
euler_char TOPOLOGY Euler characteristic, components minus holes, squashed
genus TOPOLOGY handles of the main object
num_holes TOPOLOGY holes in the mask
complexity TOPOLOGY branches of the mask's skeleton
spectral_gap TOPOLOGY algebraic connectivity of the cell graph (0 = falls apart)
betti_1 TOPOLOGY first Betti number (independent loops)
"""


class FeatureInfo(NamedTuple):
    index: int
    name: str
    group: str
    meaning: str


FEATURES: tuple[FeatureInfo, ...] = tuple(
    FeatureInfo(i, *line.split(" ", 2)) for i, line in enumerate(_TABLE.strip().splitlines())
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_GROUPS: dict[str, list[str]] = {}
for _f in FEATURES:
    FEATURE_GROUPS.setdefault(_f.group, []).append(_f.name)
NUM_FEATURES = len(FEATURES)
assert NUM_FEATURES == 32 and [len(v) for v in FEATURE_GROUPS.values()] == [8, 6, 5, 7, 6]


def index(name: str) -> int:
    """Position of a feature in the vector: ``index("circularity") == 19``."""
    return FEATURE_NAMES.index(name)


def as_dict(vector: Sequence[float]) -> dict[str, float]:
    """A feature vector as ``{name: value}``."""
    return {name: float(v) for name, v in zip(FEATURE_NAMES, vector)}


def squash(x, c: float):
    """x / (x + c): [0, inf) -> [0, 1), equal to 0.5 at x = c."""
    x = np.maximum(x, 0.0)
    return x / (x + c)


# ---------------------------------------------------------------------------------------------
# Input: any array or tensor a student may have -> RGB float32 in [0, 1] at the working size


def to_rgb(image, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Any image -> (H, W, 3) float32 in [0, 1].

    Accepts NumPy arrays or torch tensors: gray (H, W), (H, W, 1|2|3|4), channels-first
    (1|3|4, H, W), a batch of one (1, C, H, W). uint8 is read as 0-255, uint16 as 0-65535, bool as
    0/1; floats as [0, 1], or as [-1, 1] (the course's model scale) when they hold negative values.
    Pass ``value_range=(lo, hi)`` to say otherwise. Alpha is composited onto white (like
    :func:`course_utils.data.load_image`). Raises ``ValueError`` for empty, NaN/inf, too small
    (< 4x4) or out-of-range input (:class:`~course_utils.errors.BadRequest`, a ``ValueError``).
    """
    if torch.is_tensor(image):
        image = image.detach().cpu()
        image = image.float().numpy() if image.dtype in (torch.bfloat16, torch.float16) else image.numpy()
    arr = np.asarray(image)
    if arr.size == 0:
        raise BadRequest("empty image")
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) and arr.shape[2] not in (1, 2, 3, 4):
        arr = arr.transpose(1, 2, 0)  # channels first -> channels last
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise BadRequest(f"expected a gray, RGB or RGBA image, got shape {tuple(np.shape(image))}")
    if arr.shape[0] < MIN_SIDE or arr.shape[1] < MIN_SIDE:
        raise BadRequest(f"image is {arr.shape[0]}x{arr.shape[1]} pixels; features need at least {MIN_SIDE}x{MIN_SIDE}")
    x = _to_unit(arr, value_range)
    if x.shape[2] in (2, 4):  # gray + alpha or RGBA: composite onto white
        alpha = x[..., -1:]
        x = x[..., :-1] * alpha + (1.0 - alpha)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x, dtype=np.float32)


def _to_unit(arr: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise BadRequest(f"cannot read pixels of dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise BadRequest("image contains NaN or infinite values")
    if value_range is None:
        if arr.dtype == np.uint8:
            value_range = (0.0, 255.0)
        elif arr.dtype == np.uint16:
            value_range = (0.0, 65535.0)
        elif np.issubdtype(arr.dtype, np.integer):
            value_range = (0.0, 255.0) if arr.max() <= 255 else (0.0, 65535.0)
        else:
            value_range = (-1.0, 1.0) if arr.min() < 0 else (0.0, 1.0)
    lo, hi = map(float, value_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise BadRequest(f"value_range must be finite (low, high) with high > low, got {value_range!r}")
    tol = 1e-3 * (hi - lo)
    if arr.min() < lo - tol or arr.max() > hi + tol:
        raise BadRequest(
            f"pixel values span [{float(arr.min()):.3g}, {float(arr.max()):.3g}], outside the assumed range "
            f"[{lo:g}, {hi:g}]; pass value_range=(low, high)"
        )
    return np.clip((arr.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def prepare(image, value_range: tuple[float, float] | None = None, size: int = WORK_SIZE) -> np.ndarray:
    """:func:`to_rgb`, then resize so the longer side is ``size`` (area averaging when shrinking)."""
    rgb = to_rgb(image, value_range)
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        rgb = np.clip(cv2.resize(rgb, (new_w, new_h), interpolation=interp), 0.0, 1.0)
    return rgb


# ---------------------------------------------------------------------------------------------
# Object mask and topology


def object_mask(rgb: np.ndarray, lab: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Separate the object from the background: ``(mask (H, W) bool, method)``.

    ``method`` is ``"border colour"``, ``"luminance"`` or ``"none"`` (see the module docstring).
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab) if lab is None else lab
    h, w = rgb.shape[:2]
    b = max(1, round(0.04 * min(h, w)))
    sides = (lab[:b], lab[-b:], lab[:, :b], lab[:, -b:])
    protos = np.stack([np.median(s.reshape(-1, 3), axis=0) for s in sides])  # (4, 3)
    dist = np.min(np.linalg.norm(lab[None] - protos[:, None, None], axis=-1), axis=0)  # (H, W) dE
    if dist.max() > 10.0:
        threshold = max(float(threshold_otsu(dist)), 10.0)  # at least dE 10: JPEG noise is no object
        mask = _clean(dist > threshold)
        if _plausible(mask):
            return mask, "border colour"
    y = _luminance(rgb)
    if y.max() - y.min() > 0.05:
        bright = y > threshold_otsu(y)
        border = np.concatenate([bright[0], bright[-1], bright[:, 0], bright[:, -1]])
        mask = _clean(~bright if border.mean() > 0.5 else bright)
        if _plausible(mask):
            return mask, "luminance"
    return np.zeros((h, w), dtype=bool), "none"


def _plausible(mask: np.ndarray) -> bool:
    return 0.002 < mask.mean() < 0.95


def _min_hole(mask: np.ndarray) -> int:
    return max(4, round(0.001 * mask.size))


_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def _clean(mask: np.ndarray) -> np.ndarray:
    """Open, close, drop specks (< 10% of the largest component), fill pin-holes."""
    m = mask.astype(np.uint8)
    m = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, _KERNEL), cv2.MORPH_CLOSE, _KERNEL)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.concatenate([[False], areas >= max(0.1 * areas.max(), _min_hole(mask))])
    m = keep[labels]
    holes, _ = hole_labels(m)
    return m | holes.astype(bool) & ~_big_holes(holes, _min_hole(mask))


def hole_labels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label the holes: background components (4-connected) that do not touch the image border.

    Returns (labels (H, W) int with 0 = not a hole, areas (n,) of holes 1..n).
    """
    n, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    is_hole = np.ones(n, dtype=bool)
    is_hole[0] = False  # label 0 is the foreground
    is_hole[touching] = False
    renumber = np.zeros(n, dtype=np.int32)
    renumber[is_hole] = np.arange(1, is_hole.sum() + 1)
    holes = renumber[labels]
    areas = np.bincount(holes.ravel(), minlength=is_hole.sum() + 1)[1:]
    return holes, areas


def _big_holes(labels: np.ndarray, min_area: int) -> np.ndarray:
    areas = np.bincount(labels.ravel())
    big = areas >= min_area
    big[0] = False
    return big[labels]


@dataclass(frozen=True)
class Topology:
    """Topological numbers of a planar mask (foreground 8-connected, background 4-connected)."""

    components: int  # b0
    holes: int  # b1, by Alexander duality
    main_holes: int  # holes of the largest component: the genus of its thickened surface

    @property
    def euler(self) -> int:
        """chi = b0 - b1 (= V - E + F of the pixel complex)."""
        return self.components - self.holes

    @property
    def betti_0(self) -> int:
        return self.components

    @property
    def betti_1(self) -> int:
        return self.holes

    @property
    def genus(self) -> int:
        return self.main_holes


def topology(mask: np.ndarray, min_hole: int | None = None) -> Topology:
    """Count components and holes of a boolean mask; holes smaller than ``min_hole`` pixels
    (default 0.1% of the image, at least 4) are ignored as noise."""
    mask = np.asarray(mask, dtype=bool)
    min_hole = _min_hole(mask) if min_hole is None else min_hole
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return Topology(0, 0, 0)
    _, areas = hole_labels(mask)
    main = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    _, main_areas = hole_labels(main)
    return Topology(n - 1, int(np.sum(areas >= min_hole)), int(np.sum(main_areas >= min_hole)))


def main_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a mask (empty if the mask is)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def skeleton_branches(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The skeleton (scikit-image) and its number of branches: the pieces left when junction
    pixels (3 or more skeleton neighbours) are removed. A disk or a ring has one branch."""
    skel = skeletonize(mask)
    if not skel.any():
        return skel, 0
    s = skel.astype(np.uint8)
    neighbours = cv2.filter2D(s, -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT) - s
    junction = skel & (neighbours >= 3)
    n, _ = cv2.connectedComponents((skel & ~junction).astype(np.uint8), connectivity=8)
    return skel, max(1, n - 1)


def cell_graph(mask: np.ndarray, cells: int = 16) -> np.ndarray:
    """Adjacency matrix of the object's cell graph.

    The mask's bounding box, padded to a square, is cut into ``cells x cells`` cells; a cell at
    least half covered by the object is a node, 4-neighbouring nodes are joined by an edge.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return np.zeros((0, 0))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0)
    box = np.zeros((side, side), np.float32)
    oy, ox = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
    box[oy : oy + y1 - y0, ox : ox + x1 - x0] = mask[y0:y1, x0:x1]
    grid = cv2.resize(box, (cells, cells), interpolation=cv2.INTER_AREA if side >= cells else cv2.INTER_NEAREST) >= 0.5
    ids = -np.ones(grid.shape, int)
    ids[grid] = np.arange(grid.sum())
    adj = np.zeros((grid.sum(), grid.sum()))
    for a, b in ((ids[:, :-1], ids[:, 1:]), (ids[:-1], ids[1:])):  # horizontal, vertical neighbours
        both = (a >= 0) & (b >= 0)
        adj[a[both], b[both]] = adj[b[both], a[both]] = 1.0
    return adj


def graph_stats(adj: np.ndarray) -> tuple[float, float]:
    """(graph_density, spectral_gap) of a grid graph, both in [0, 1].

    density = mean degree / 4 (a full grid's interior has degree 4).
    gap = squash(lambda_2 V 4 / pi^2, 1) with lambda_2 the second-smallest eigenvalue of the
    normalised Laplacian I - D^-1/2 A D^-1/2 (the Fiedler value): 0 when the graph falls apart,
    small across a thin neck; lambda_2 V ~ pi^2 / 4 for a square grid, which then scores 0.5.
    """
    V = adj.shape[0]
    if V < 2:
        return 0.0, 0.0
    deg = adj.sum(1)
    density = float(deg.mean() / 4.0)
    if np.any(deg == 0):
        return density, 0.0  # an isolated cell: disconnected
    d = 1.0 / np.sqrt(deg)
    lap = np.eye(V) - d[:, None] * adj * d[None, :]
    lam2 = float(eigh(lap, eigvals_only=True, subset_by_index=[1, 1])[0])
    lam2 = lam2 if lam2 > 1e-9 else 0.0  # round-off of an exact zero: the graph falls apart
    return min(density, 1.0), float(squash(lam2 * V * 4.0 / np.pi**2, 1.0))


# ---------------------------------------------------------------------------------------------
# Outline: Fourier-smoothed outer contour, curvature, affine moments


def outline(mask: np.ndarray, n: int = 256, harmonics: float = 12.0) -> np.ndarray | None:
    """Outer outline of the mask's largest component, as the Fourier coefficients (n,) of
    z(t) = x(t) + i y(t), t in [0, 2 pi), counter-clockwise with y pointing up; None without an
    object. The outline is the 0.5 level line (marching squares) of the component blurred by a
    1-pixel Gaussian, resampled evenly along its length, then smoothed by the taper
    exp(-(k / harmonics)^2) on its Fourier series, so its derivatives are exact and smooth."""
    main = np.pad(main_component(mask).astype(np.float32), 2)
    if not main.any():
        return None
    contours = find_contours(cv2.GaussianBlur(main, (0, 0), 1.0), 0.5)
    if not contours:
        return None
    c = max(contours, key=len)  # (row, col) points
    z = c[:, 1] - 1j * c[:, 0]  # flip y so the plane is the usual one
    if len(z) < 4:
        return None
    zc = np.append(z, z[0])
    s = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(zc)))])
    u = np.linspace(0.0, s[-1], n, endpoint=False)  # evenly spaced along the arc
    z = np.interp(u, s, zc.real) + 1j * np.interp(u, s, zc.imag)
    k = np.fft.fftfreq(n, 1.0 / n)
    coeffs = np.fft.fft(z) * np.exp(-((k / harmonics) ** 2))
    if _cross(np.fft.ifft(coeffs), _derivs(coeffs, 1)[0]).mean() < 0:  # counter-clockwise: positive area
        coeffs = np.fft.fft(np.fft.ifft(coeffs)[::-1])
    return coeffs


def _derivs(coeffs: np.ndarray, order: int) -> list[np.ndarray]:
    """z', z'', ... up to ``order`` (derivatives in t, exact for the Fourier series)."""
    n = coeffs.size
    ik = 1j * np.fft.fftfreq(n, 1.0 / n)
    return [np.fft.ifft(coeffs * ik**m) for m in range(1, order + 1)]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[a, b] = a_x b_y - a_y b_x for complex-encoded 2-D vectors."""
    return (np.conj(a) * b).imag


def outline_measures(coeffs: np.ndarray) -> dict[str, float]:
    """Area A, length P, circularity 4 pi A / P^2, and the curvature statistics of an outline.

    kappa = [z', z''] / |z'|^3, made scale free by r_eq = sqrt(A / pi); averages are over arc
    length: ``mean_k`` = mean |kappa r_eq| (1 for a disk; for any convex outline the total
    curvature is 2 pi, so mean_k = sqrt(circularity)), ``std_k`` = std(kappa r_eq) (0 for a disk).
    """
    z = np.fft.ifft(coeffs)
    d1, d2 = _derivs(coeffs, 2)
    speed = np.abs(d1)
    area = float(np.mean(_cross(z, d1))) * np.pi  # A = 1/2 integral of [z, z'] dt
    length = float(np.mean(speed)) * 2 * np.pi
    if area <= 1e-9 or length <= 1e-9:
        return dict(area=0.0, length=0.0, circularity=0.0, mean_k=0.0, std_k=0.0)
    kappa = _cross(d1, d2) / np.maximum(speed, 1e-12) ** 3 * np.sqrt(area / np.pi)
    w = speed / speed.sum()
    mean_k = float(np.sum(w * np.abs(kappa)))
    std_k = float(np.sqrt(np.sum(w * (kappa - np.sum(w * kappa)) ** 2)))
    circularity = min(1.0, 4 * np.pi * area / length**2)
    return dict(area=area, length=length, circularity=circularity, mean_k=mean_k, std_k=std_k)


def affine_ellipse_ratio(region: np.ndarray) -> float:
    """16 pi^2 I1 of a filled region, I1 = (mu20 mu02 - mu11^2) / mu00^4 (Flusser's first affine
    moment invariant): unchanged by any linear map and translation, equal to 1 for every ellipse
    and larger for every other shape (16 pi^2 / 144 = 1.097 for a square)."""
    m = cv2.moments(region.astype(np.uint8), binaryImage=True)
    if m["m00"] <= 0:
        return 1.0
    return float(16 * np.pi**2 * (m["mu20"] * m["mu02"] - m["mu11"] ** 2) / m["m00"] ** 4)


# ---------------------------------------------------------------------------------------------
# The features


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _color(rgb: np.ndarray, hsv: np.ndarray, lab: np.ndarray) -> list[float]:
    h, s, v = hsv[..., 0].ravel() / 360.0, hsv[..., 1].ravel(), hsv[..., 2].ravel()
    chroma = s * v
    if chroma.mean() < 0.01:  # achromatic: no dominant hue, the "main colour" is every pixel
        hue, members = 0.0, np.ones_like(s, dtype=bool)
    else:
        hist = np.bincount(np.minimum((h * 36).astype(int), 35), weights=chroma, minlength=36)
        hist = hist + 0.5 * (np.roll(hist, 1) + np.roll(hist, -1))  # circular smoothing
        centre = (np.argmax(hist) + 0.5) / 36
        members = (np.abs((h - centre + 0.5) % 1.0 - 0.5) <= 15 / 360) & (chroma > 0)
        angle = 2 * np.pi * h[members]
        hue = float(
            np.arctan2(np.sum(chroma[members] * np.sin(angle)), np.sum(chroma[members] * np.cos(angle)))
            / (2 * np.pi)
            % 1.0
        )
    q = np.minimum((rgb.reshape(-1, 3) * 4).astype(int), 3)
    p = np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64) / q.shape[0]
    p = p[p > 0]
    labs = lab.reshape(-1, 3)
    return [
        hue,
        float(s[members].mean()),
        float(v[members].mean()),
        float(-(p * np.log(p)).sum() / np.log(64)),
        float(np.clip(0.5 + np.mean(rgb[..., 0] - rgb[..., 2]), 0, 1)),
        float(min(1.0, s.std() / 0.5)),
        float(min(1.0, _rms(labs) / 50.0)),
        float(np.mean((s > 0.5) & (v > 0.2))),
    ]


def _rms(lab_pixels: np.ndarray) -> float:
    """RMS colour difference (dE) from the mean colour."""
    if lab_pixels.shape[0] == 0:
        return 0.0
    lab_pixels = lab_pixels.astype(np.float64)  # a float32 mean is off by round-off on flat images
    return float(np.sqrt(np.mean(np.sum((lab_pixels - lab_pixels.mean(0)) ** 2, axis=1))))


def _lighting_material(rgb, hsv, lab, y, mask) -> list[float]:
    obj = mask if mask.any() else np.ones_like(mask)
    bg = ~mask if mask.any() else np.zeros_like(mask)
    s, v = hsv[..., 1], hsv[..., 2]
    med = float(np.median(y))
    p10 = float(np.percentile(y, 10))
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT) / 8.0
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT) / 8.0
    grad = float(np.mean(np.sqrt(gx * gx + gy * gy)))
    lab_obj = lab[obj]
    if bg.any():
        bg_mean = lab[bg].mean(0)
        obj_bg = float(min(1.0, np.linalg.norm(lab_obj.mean(0) - bg_mean) / 100.0))
        transparency = float(squash(np.mean(np.linalg.norm(lab_obj - bg_mean, axis=1) < 20.0), 0.05))
    else:
        obj_bg = transparency = 0.0
    y_obj = y[obj]
    med_obj = float(np.median(y_obj))
    p99_obj = float(np.percentile(y_obj, 99))
    fine = y - cv2.GaussianBlur(y, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
    inner = cv2.erode(obj.astype(np.uint8), _KERNEL, iterations=2).astype(bool)  # texture, not the outline
    inner = inner if inner.sum() >= 16 else obj
    return [
        float(min(1.0, 10.0 * np.mean((v[obj] > 0.9) & (s[obj] < 0.2)))),  # specular_highlights
        float(np.clip(1.0 - p10 / med, 0, 1)) if med > 1e-3 else 0.0,  # shadow_intensity
        float(np.mean(y < 0.5 * med)) if med > 1e-3 else 0.0,  # shadow_ratio
        float(min(1.0, y.std() / 0.5)),  # brightness_var
        float(squash(grad, 0.04)),  # local_contrast
        obj_bg,  # obj_bg_contrast
        float(np.clip((p99_obj - med_obj) / (1.0 - med_obj), 0, 1)) if med_obj < 1 - 1e-3 else 0.0,  # reflectivity
        transparency,  # transparency
        float(squash(fine[inner].std(), 0.03)),  # roughness
        float((1.0 - s[obj].mean()) * min(1.0, y_obj.std() / 0.3)),  # metallic
        float(1.0 - min(1.0, _rms(lab_obj) / 50.0)),  # color_uniformity
    ]


def _spectral_entropy(y: np.ndarray) -> float:
    """Entropy of the normalised power spectrum of Y (mean removed, Hann window), / ln(#freqs)."""
    h, w = y.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2((y - y.mean()) * window)) ** 2
    power[0, 0] = 0.0
    total = power.sum()
    if total < 1e-10 * y.size:
        return 0.0
    p = power[power > 0] / total
    return float(min(1.0, -(p * np.log(p)).sum() / np.log(power.size - 1)))


def _shape_topology(mask: np.ndarray, y: np.ndarray) -> list[float]:
    spectral = _spectral_entropy(y)
    topo = topology(mask)
    density, gap = graph_stats(cell_graph(main_component(mask)))
    _, branches = skeleton_branches(mask)
    coeffs = outline(mask)
    m = outline_measures(coeffs) if coeffs is not None else None
    if m is None or m["area"] == 0:
        circularity = solidity = mean_k = std_k = affine = 0.0
    else:
        main = main_component(mask)
        hull = cv2.convexHull(cv2.findNonZero(main.astype(np.uint8)))
        canvas = np.zeros(mask.shape, np.uint8)
        cv2.fillConvexPoly(canvas, hull, 1)
        solidity = float(main.sum() / max(int(canvas.sum()), int(main.sum())))
        circularity = m["circularity"]
        mean_k, std_k = float(squash(m["mean_k"], 1.0)), float(squash(m["std_k"], 1.0))
        affine = float(squash(affine_ellipse_ratio(binary_fill_holes(main)) - 1.0, 0.25))
    return [
        circularity,
        solidity,
        spectral,
        density,
        mean_k,
        std_k,
        affine,
        float(1.0 / (1.0 + np.exp(-topo.euler))),  # euler_char = sigmoid(chi)
        float(squash(topo.genus, 2.0)),
        float(squash(topo.holes, 2.0)),
        float(squash(max(branches - 1, 0), 24.0)),
        gap,
        float(squash(topo.betti_1, 2.0)),
    ]


def features_of_rgb(rgb: np.ndarray) -> np.ndarray:
    """The 32 features of an image already at the working size (output of :func:`prepare`)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    y = _luminance(rgb)
    mask, _ = object_mask(rgb, lab)
    values = _color(rgb, hsv, lab) + _lighting_material(rgb, hsv, lab, y, mask) + _shape_topology(mask, y)
    return np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)


def extract_features(image, *, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """The 32 features of one image, float32 (32,) in [0, 1], in the order of ``FEATURE_NAMES``.

    ``image``: a NumPy array or torch tensor in any layout :func:`to_rgb` accepts, any size.
    """
    return features_of_rgb(prepare(image, value_range))


def extract_batch(x: torch.Tensor) -> torch.Tensor:
    """Features of a batch of generated images (B, C, H, W) in [-1, 1] -> (B, 32) float32.

    Values are clamped to [-1, 1] first (samplers overshoot a little); the result lies on the
    input's device.
    """
    if x.dim() != 4:
        raise BadRequest(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
    unit = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    rows = [extract_features(img, value_range=(0.0, 1.0)) for img in unit]
    return torch.from_numpy(np.stack(rows)).to(x.device) if rows else torch.zeros(0, NUM_FEATURES, device=x.device)


# ---------------------------------------------------------------------------------------------
# A folder of photos: cached by content hash, in parallel, with a progress bar


class FolderFeatures(NamedTuple):
    paths: list[Path]  # the images that were read, in sorted order
    features: np.ndarray  # (N, 32) float32, row i belongs to paths[i]
    failures: list[tuple[Path, str]]  # unreadable files and why


def default_cache_path() -> Path:
    """``<cache>/features-v<version>-<size>.npz``: one table for every folder, keyed by sha256."""
    return config.cache_dir() / f"features-v{FEATURE_VERSION}-{WORK_SIZE}.npz"


def load_cache(path: str | os.PathLike, *, warn: bool = True) -> dict[str, np.ndarray]:
    """{sha256 hex: features (32,)} from a cache file. A truncated or corrupt cache counts as empty
    (with a warning naming it, unless ``warn`` is False): the next write rebuilds it."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with np.load(path) as table:
            keys, values = table["keys"], table["features"]
        if values.ndim != 2 or values.shape[1] != NUM_FEATURES or keys.shape != (values.shape[0],):
            raise ValueError(f"tables of shape {keys.shape} and {values.shape}, expected (N,) and (N, {NUM_FEATURES})")
        return {str(k): v for k, v in zip(keys, values.astype(np.float32))}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        if warn:
            warnings.warn(
                f"the feature cache {path} is truncated or corrupt (it does not read as a table of features: "
                f"{str(err).split('. ')[0]}); it is rebuilt from the images",
                stacklevel=2,
            )
        return {}


def update_cache(path: str | os.PathLike, new: dict[str, np.ndarray]) -> None:
    """Add ``new`` entries to the cache file while holding its lock (``FILE.lock``): entries another
    process added since this one read the cache are kept, and a corrupt cache is replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock(path, what="feature cache", wait=60.0):
        table = load_cache(path, warn=False)
        table.update(new)
        save_cache(path, table)


def save_cache(path: str | os.PathLike, table: dict[str, np.ndarray]) -> None:
    """Write the table atomically (a killed run leaves the old cache or the new one); callers that
    share the file use :func:`update_cache`, which holds its lock."""
    keys = np.array(sorted(table), dtype="U64")
    values = np.stack([table[k] for k in keys]) if len(keys) else np.zeros((0, NUM_FEATURES), np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, keys=keys, features=values.astype(np.float32))


def features_of_file(path: str | os.PathLike) -> np.ndarray | str:
    """Features of one image file, or the error message when it cannot be read.

    Never raises for a bad file (missing, truncated, corrupt, over ``data.MAX_PIXELS`` pixels, or
    anything else that fails on it): a folder run lists it in its failures and goes on."""
    from .data import load_image

    try:
        return extract_features(load_image(path), value_range=(0.0, 1.0))
    except ValueError as err:  # data.UnreadableFile and bad pixels
        return str(err)
    except Exception as err:  # one file must not end a folder run: report it and go on
        return f"cannot measure {path}: {type(err).__name__}: {err}"


def _init_worker() -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class _InProcess:
    """What :func:`extract_folder` uses of a pool (``imap``, ``close``, ``join``), run in this process."""

    def imap(self, fn, items, chunksize: int = 1):
        return map(fn, items)

    def close(self) -> None:
        pass

    def join(self) -> None:
        pass


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(a, ast.Name) and a.id == "__name__" for a in sides) and any(
        isinstance(a, ast.Constant) and a.value == "__main__" for a in sides
    )


def _main_reruns_in_workers(method: str) -> str | None:
    """The main script when workers started with ``method`` would run its top level again, else None.

    spawn and forkserver workers import the main module again (as ``__mp_main__``; multiprocessing
    skips only ``-m pkg`` packages' ``__main__`` and interactive sessions, which have no file). That
    is harmless when the script keeps its work under ``if __name__ == "__main__":``; without that
    guard every worker would run the whole script (and start pools of its own).
    """
    if method == "fork":
        return None
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None and (spec_name == "__main__" or spec_name.endswith(".__main__")):
        return None
    path = getattr(main, "__file__", None)
    if path is None or (spec_name is None and Path(path).stem == "ipython"):
        return None  # a notebook kernel or an interactive session: nothing to run again
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return str(path)  # cannot tell: assume the worst
    if any(isinstance(node, ast.If) and _is_main_guard(node.test) for node in tree.body):
        return None
    return str(path)


def _pool(workers: int):
    """A process pool that is safe to start from a notebook kernel or a script.

    Plain ``fork`` copies a process that runs threads (Jupyter's, OpenCV's pool) and can deadlock
    in the child; a fork server is a clean single-threaded process that has imported this module
    once, so workers start fast and safe. Windows has no fork server: spawn.

    Both import the main script again in every worker. When that script has no
    ``if __name__ == "__main__":`` guard this returns an in-process stand-in with a one-line
    warning instead: the folder is measured in this process, and the script's top level runs once.
    """
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
    else:
        ctx = mp.get_context("spawn")
    script = _main_reruns_in_workers(ctx.get_start_method())
    if script is not None:
        # Not "fork" instead: measured on Linux (Python 3.11, 2 cores), a fork pool started from a
        # script that had already run torch and extract_features hung in 3 runs of 3 (1 of 3 after
        # extract_features alone): the children inherit the parent's native thread pools in
        # whatever state they were. One process is always safe and costs little: 24 photos took
        # 0.6 s in one process and 2.6 s with two fork-server workers (starting the server dominates).
        warnings.warn(
            f'{script} has no `if __name__ == "__main__":` guard, so each of {workers} worker processes '
            "would run it again; measuring in this process instead (put the script's work under that guard "
            "to use workers)",
            RuntimeWarning,
            stacklevel=3,
        )
        return _InProcess()
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload([__name__])
    return ctx.Pool(workers, initializer=_init_worker)


def extract_folder(
    folder: str | os.PathLike,
    *,
    workers: int | None = None,
    cache: bool | str | os.PathLike = True,
    progress: bool = True,
    limit: int | None = None,
) -> FolderFeatures:
    """Features of every image below ``folder``: ``(paths, features (N, 32), failures)``.

    Files are identified by the sha256 of their bytes, so a renamed or copied photo is not
    measured twice, and an edited one is measured again. ``cache=True`` uses
    :func:`default_cache_path`, a path uses that file, ``False`` keeps nothing. ``workers``
    processes (default: all cores; 1 = in this process; a script without an
    ``if __name__ == "__main__":`` guard measures in this process, with a warning). Corrupt files land in ``failures``
    and the run goes on. New entries are added to the cache under its lock (:func:`update_cache`),
    and a truncated or corrupt cache is rebuilt with a warning. ``limit`` keeps N files spread
    evenly over the sorted list (so a folder of class sub-folders keeps every class), as fast mode
    wants.
    """
    from tqdm.auto import tqdm

    from .data import list_images

    for name, value in (("workers", workers), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise BadRequest(f"{name} must be a whole number >= 1 (or None), got {value!r}")
    files = list_images(folder)
    if limit is not None and limit < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    cache_path = (default_cache_path() if cache is True else Path(cache)) if cache else None
    table = load_cache(cache_path) if cache_path else {}
    keys, unreadable = [], {}
    for p in files:  # a file that cannot even be read (permissions, a vanished file) is a failure, not an abort
        try:
            keys.append(sha256_file(p))
        except OSError as err:
            keys.append(None)
            unreadable[p] = f"cannot read {p}: {err.strerror or err}"
    todo = sorted({k: p for k, p in zip(keys, files) if k is not None and k not in table}.items())
    failed: dict[str, str] = {}
    new: dict[str, np.ndarray] = {}
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    bar = tqdm(total=len(todo), desc="features", unit="img", disable=not progress or not todo)
    if workers == 1:
        results = map(features_of_file, [p for _, p in todo])
    else:
        pool = _pool(workers)
        results = pool.imap(features_of_file, [p for _, p in todo], chunksize=8)
    try:
        for (key, _), result in zip(todo, results):
            if isinstance(result, str):
                failed[key] = result
            else:
                table[key] = new[key] = result
            bar.update()
    finally:
        bar.close()
        if workers > 1:
            pool.close()
            pool.join()
    if cache_path and new:
        update_cache(cache_path, new)
    paths = [p for p, k in zip(files, keys) if k in table]
    rows = [table[k] for k in keys if k in table]
    features = np.stack(rows).astype(np.float32) if rows else np.zeros((0, NUM_FEATURES), np.float32)
    failures = [(p, unreadable[p] if k is None else failed[k]) for p, k in zip(files, keys) if k is None or k in failed]
    return FolderFeatures(paths, features, failures)
