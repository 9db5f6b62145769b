"""Does a synthetic ``realistic`` session look like rr30a-dev? Picture and numbers.

    python -m bench.realism [--seed S] [--out docs/realism.png] [--rr30a DIR]

Writes ``docs/realism.png``: the maximum projection of synthetic session 0 beside
one of rr30a-dev session 0 (the same µm crop, 768 × 768 pixels = 92 µm, around the
annotated spines; same grey scale, 0-255 with gamma 0.6 so the background shows),
an enlarged 30 µm detail of each, and a table of statistics measured the same
way on both:

* mean grey value and fraction of zero pixels of the whole stack;
* median of the maximum projection (background and haze level);
* correlation of neighbouring pixels along x in dim areas (detector smoothing);
* spines per µm of annotated branch in session 0;
* head / shaft brightness: median of the brightest voxel within 0.6 µm (1 plane in
  z) of each annotated spine, divided by the same around centre-line points.

Prints the table as Markdown, too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from spinetrack.io import read_session  # noqa: E402

CROP_PX = 768
DETAIL_UM = 30.0
GAMMA = 0.6


def find_rr30a() -> Path | None:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import find_rr30a as _find

    return _find()


def _window_max(image: np.ndarray, points_px: np.ndarray, radius_px=(1, 5, 5)) -> np.ndarray:
    """Brightest voxel within a box around each (z, y, x) point."""
    idx = np.round(points_px).astype(int)
    for ax in range(3):
        idx[:, ax] = np.clip(idx[:, ax], 0, image.shape[ax] - 1)
    out = np.empty(len(idx))
    for i, (z, y, x) in enumerate(idx):
        sl = tuple(slice(max(c - r, 0), c + r + 1) for c, r in zip((z, y, x), radius_px))
        out[i] = image[sl].max()
    return out


def _neighbour_corr(image: np.ndarray) -> float:
    """Correlation of x-neighbours over dim voxels (below the 75th percentile)."""
    plane = image[image.shape[0] // 2].astype(float)
    dim = plane < np.percentile(plane, 75)
    a, b = plane[:, :-1], plane[:, 1:]
    sel = dim[:, :-1] & dim[:, 1:]
    return float(np.corrcoef(a[sel], b[sel])[0, 1])


def measure(image: np.ndarray, voxel, spines: pd.DataFrame, lines: pd.DataFrame) -> dict:
    """The statistics of one session (spines, lines: that session's truth in pixels)."""
    mp = image.max(axis=0)
    length = float(lines.groupby("branch_id")["arc_um"].agg(lambda a: a.max() - a.min()).sum())
    r = (1, int(round(0.6 / voxel[1])), int(round(0.6 / voxel[2])))
    heads = _window_max(image, spines[["z", "y", "x"]].to_numpy(), r)
    step = max(1, len(lines) // 3000)
    shaft = _window_max(image, lines[["z", "y", "x"]].to_numpy()[::step], r)
    return {
        "mean grey": float(image.mean()),
        "zero pixels": float(np.mean(image == 0)),
        "max-projection median": float(np.median(mp)),
        "x-neighbour correlation": _neighbour_corr(image),
        "spines per µm": len(spines) / length,
        "head / shaft": float(np.median(heads) / np.median(shaft)),
        "head median": float(np.median(heads)),
        "shaft median": float(np.median(shaft)),
    }


def rr30a_session0(folder: Path):
    session = read_session(folder / "session0.tif")
    spines = pd.read_csv(folder / "truth_spines.csv")
    lines = pd.read_csv(folder / "truth_lines.csv")
    return session, spines[spines["session"] == 0], lines[lines["session"] == 0]


def synthetic_session0(seed: int):
    from spinetrack.synth import make_series

    t0 = time.perf_counter()
    syn = make_series("realistic", n_sessions=1, seed=seed)
    elapsed = time.perf_counter() - t0
    spines, lines = syn.truth["spines"], syn.truth["lines"]
    return syn.series[0], spines[spines["session"] == 0], lines[lines["session"] == 0], elapsed


def crop_origin(spines: pd.DataFrame, shape) -> tuple[int, int]:
    """Top-left (y, x) of a CROP_PX square centred on the spines, inside the image."""
    cy, cx = spines["y"].median(), spines["x"].median()
    y0 = int(np.clip(round(cy - CROP_PX / 2), 0, shape[1] - CROP_PX))
    x0 = int(np.clip(round(cx - CROP_PX / 2), 0, shape[2] - CROP_PX))
    return y0, x0


def _display(mp: np.ndarray) -> np.ndarray:
    return (np.clip(mp.astype(float), 0, 255) / 255.0) ** GAMMA


def figure(real_mp, syn_mp, real_stats, syn_stats, voxel, out: Path, detail_yx=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = int(round(DETAIL_UM / voxel[1]))
    fig = plt.figure(figsize=(13, 11.5))
    grid = fig.add_gridspec(3, 2, height_ratios=[6, 3.2, 1.4])
    for col, (mp, title) in enumerate(((syn_mp, "synthetic (realistic preset)"),
                                       (real_mp, "rr30a-dev session 0"))):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(_display(mp), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}: max projection, {mp.shape[0] * voxel[1]:.0f} µm", fontsize=11)
        ax.axis("off")
        y0, x0 = detail_yx[col]
        ax.add_patch(plt.Rectangle((x0, y0), d, d, fill=False, color="tab:orange", lw=1))
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(_display(mp[y0:y0 + d, x0:x0 + d]), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(f"detail {DETAIL_UM:.0f} µm", fontsize=10)
        ax.axis("off")
    ax = fig.add_subplot(grid[2, :])
    ax.axis("off")
    keys = list(syn_stats)
    cells = [[k, _fmt(syn_stats[k]), _fmt(real_stats[k])] for k in keys]
    table = ax.table(cellText=cells, colLabels=["statistic", "synthetic", "rr30a-dev"],
                     loc="center", cellLoc="center")
    table.scale(1, 1.1)
    fig.suptitle("Same grey scale (0-255, gamma 0.6) and pixel size (0.12 µm) in both",
                 fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _detail_origin(spines: pd.DataFrame, y0: int, x0: int, d: int) -> tuple[int, int]:
    """Detail square centred on the densest group of spines inside the crop."""
    inside = spines[(spines["y"] >= y0 + d / 2) & (spines["y"] < y0 + CROP_PX - d / 2)
                    & (spines["x"] >= x0 + d / 2) & (spines["x"] < x0 + CROP_PX - d / 2)]
    if not len(inside):
        return (CROP_PX - d) // 2, (CROP_PX - d) // 2
    pts = inside[["y", "x"]].to_numpy()
    counts = [(np.sum(np.all(np.abs(pts - p) < d / 2, axis=1)), i) for i, p in enumerate(pts)]
    best = pts[max(counts)[1]]
    return int(best[0] - y0 - d / 2), int(best[1] - x0 - d / 2)


def run(seed: int = 0, out: Path = ROOT / "docs" / "realism.png", rr30a: Path | None = None):
    """Make the figure; return (synthetic stats, rr30a stats, generation seconds)."""
    rr30a = rr30a or find_rr30a()
    if rr30a is None:
        raise SystemExit("rr30a-dev not found; give --rr30a DIR")
    real, rsp, rli = rr30a_session0(Path(rr30a))
    syn, ssp, sli, elapsed = synthetic_session0(seed)
    voxel = syn.voxel_size_um
    real_stats = measure(real.image, real.voxel_size_um, rsp, rli)
    syn_stats = measure(syn.image, voxel, ssp, sli)
    y0, x0 = crop_origin(rsp, real.image.shape)
    real_mp = real.image.max(axis=0)[y0:y0 + CROP_PX, x0:x0 + CROP_PX]
    sy, sx = crop_origin(ssp, syn.image.shape)
    syn_mp = syn.image.max(axis=0)[sy:sy + CROP_PX, sx:sx + CROP_PX]
    d = int(round(DETAIL_UM / voxel[1]))
    detail = [_detail_origin(ssp, sy, sx, d), _detail_origin(rsp, y0, x0, d)]
    figure(real_mp, syn_mp, real_stats, syn_stats, voxel, Path(out), detail)
    return syn_stats, real_stats, elapsed


def markdown(syn_stats: dict, real_stats: dict) -> str:
    rows = ["| statistic | synthetic realistic | rr30a-dev |", "| --- | --- | --- |"]
    rows += [f"| {k} | {_fmt(syn_stats[k])} | {_fmt(real_stats[k])} |" for k in syn_stats]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realism", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "realism.png")
    parser.add_argument("--rr30a", type=Path, default=None)
    args = parser.parse_args(argv)
    syn_stats, real_stats, elapsed = run(args.seed, args.out, args.rr30a)
    print(markdown(syn_stats, real_stats))
    print(f"\none realistic session generated in {elapsed:.1f} s; figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
