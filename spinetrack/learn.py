"""Learn the detector's selection of spine heads from a person's corrections.

The detector (:mod:`spinetrack.detect`) finds candidate heads along the traced
dendrites and keeps those that pass hand-set tests. This module replaces those
tests by a small classifier trained on one session (or a few) that a person
corrected: every candidate is labelled from the person's spines, a classifier
is fitted on physically normalised measurements of the candidates, and the
model is saved as JSON. ``DetectParams.detector_model`` (``--detector-model``)
then makes the detector keep the candidates the model accepts; de-duplication
and the rest of the detection are unchanged.

Labels (:func:`label_candidates`): a candidate is *positive* when it is the
match of a person's spine in the one-to-one matching used to score detections
(:func:`spinetrack.compare.match_points`, 1.2 µm laterally, 2.5 µm axially),
or lies within that tolerance of one (the same head found at another plane;
de-duplication keeps one); *negative* when it is near no spine and lies where
the person looked (within ``near_um`` of their centre lines, or on a traced
branch holding one of their spines when there are no lines); candidates near
a spine the person excluded (``is_bad``) or outside the annotated region are
left out of the training.

Features (:data:`FEATURES`) are lengths in µm and intensities in units of the
session's shaft brightness above background (the detector normalises every
session so), plus ratios of them (neck to head, neck and residual to the
branch's noise) and the hand-set tests' verdict. The classifier is gradient
boosting of shallow trees (default) or L2-regularised logistic regression,
both in numpy; the acceptance threshold is chosen on out-of-fold predictions
(folds are whole branches).

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
>>> y = (X["a"] + 0.1 * rng.normal(size=200) > 0).astype(int).to_numpy()
>>> model = fit_model(X, y, kind="logistic")
>>> float(np.mean(model.accepts(X) == (y == 1))) > 0.9
True
>>> DetectorModel.from_dict(model.to_dict()) == model
True
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .errors import InputError
from .files import write_json_atomic
from .progress import report

log = logging.getLogger(__name__)

__all__ = [
    "FEATURES",
    "MODEL_KINDS",
    "DetectorModel",
    "candidate_features",
    "label_candidates",
    "fit_model",
    "session_candidates",
    "select_detections",
    "learned_keep",
    "read_annotations",
    "corrected_spines",
    "learn_detector",
    "load_model",
]

MODEL_FORMAT = "spinetrack-detector-model"
MODEL_VERSION = 1
MODEL_KINDS = ("boosting", "logistic")
COMBINE = ("veto", "replace", "add")


def _combine(model: np.ndarray, hand: np.ndarray | None, how: str) -> np.ndarray:
    """The model's verdict combined with the hand-set tests' (see DetectorModel.combine)."""
    if how == "veto":
        return model & hand
    if how == "add":
        return model | hand
    return model

#: Measurements of a candidate the classifier sees (lengths µm, intensities in shaft units).
FEATURES = (
    "hand_keep",        # the hand-set tests' verdict (1 kept, 0 rejected)
    "filopodium",       # long and no brighter at its end than along its neck
    "axial",            # head mostly above or below the shaft (side 0)
    "length_um",        # shaft surface to head
    "dist_um",          # centre line to head
    "radius_um",        # shaft radius at the base
    "head_radius_um",
    "abs_offset_um",    # distance across the branch in the straightened image
    "surface_um",       # shaft's half-maximum surface at the head's plane
    "beyond_surface_um",  # abs_offset_um - surface_um
    "zwidth_um",        # head's extent along z
    "shaft_zwidth_um",  # shaft's blurred thickness along z
    "zwidth_ratio",
    "xwidth_um",        # width across the branch of a head above or below it
    "head_intensity",
    "resid",            # how far the head stands above the shaft model
    "neck_min",
    "neck_mean",
    "slope",            # steepness of the shaft model across the branch at the head
    "noise",
    "neck_ratio",       # neck_min / head_intensity
    "contrast",         # head_intensity / neck_mean
    "neck_snr",         # neck_min / noise
    "resid_snr",        # resid / noise
    "score",            # the detector's confidence
    "score_ratio",      # score / best score of the candidates within the matching tolerance
    "resid_ratio",      # resid / best resid of those candidates
)


# --------------------------------------------------------------------------- features


def candidate_features(feats: pd.DataFrame) -> pd.DataFrame:
    """The classifier's inputs for every candidate of ``_select(..., features=True)``.

    Parameters
    ----------
    feats : DataFrame
        Candidates with their measurements (:func:`session_candidates`).

    Returns
    -------
    DataFrame
        Columns :data:`FEATURES`, same index as ``feats``.
    """
    missing = [c for c in ("keep", "kind", "side", "length_um", "dist_um", "radius_um",
                           "head_radius_um", "offset_um", "surface_um", "zwidth_um",
                           "shaft_zwidth_um", "xwidth_um", "head_intensity", "resid",
                           "neck_min", "neck_mean", "slope", "noise", "score")
               if c not in feats.columns]
    if missing:
        raise InputError(None, f"candidate table lacks the detector's measurements {missing}")
    f = feats
    tiny = 1e-6
    noise = np.maximum(f["noise"].to_numpy(float), tiny)
    head = f["head_intensity"].to_numpy(float)
    out = pd.DataFrame({
        "hand_keep": f["keep"].to_numpy(bool).astype(float),
        "filopodium": (f["kind"] == "filopodium").to_numpy(float),
        "axial": (f["side"].to_numpy() == 0).astype(float),
        "length_um": f["length_um"].to_numpy(float),
        "dist_um": f["dist_um"].to_numpy(float),
        "radius_um": f["radius_um"].to_numpy(float),
        "head_radius_um": f["head_radius_um"].to_numpy(float),
        "abs_offset_um": np.abs(f["offset_um"].to_numpy(float)),
        "surface_um": f["surface_um"].to_numpy(float),
        "beyond_surface_um": np.abs(f["offset_um"].to_numpy(float))
        - f["surface_um"].to_numpy(float),
        "zwidth_um": f["zwidth_um"].to_numpy(float),
        "shaft_zwidth_um": f["shaft_zwidth_um"].to_numpy(float),
        "zwidth_ratio": f["zwidth_um"].to_numpy(float)
        / np.maximum(f["shaft_zwidth_um"].to_numpy(float), tiny),
        "xwidth_um": f["xwidth_um"].to_numpy(float),
        "head_intensity": head,
        "resid": f["resid"].to_numpy(float),
        "neck_min": f["neck_min"].to_numpy(float),
        "neck_mean": f["neck_mean"].to_numpy(float),
        "slope": f["slope"].to_numpy(float),
        "noise": f["noise"].to_numpy(float),
        "neck_ratio": f["neck_min"].to_numpy(float) / np.maximum(head, tiny),
        "contrast": head / np.maximum(f["neck_mean"].to_numpy(float), tiny),
        "neck_snr": f["neck_min"].to_numpy(float) / noise,
        "resid_snr": f["resid"].to_numpy(float) / noise,
        "score": f["score"].to_numpy(float),
        **_neighbour_ratios(feats),
    }, index=feats.index)
    return out[list(FEATURES)]


def _neighbour_ratios(feats: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each candidate's score and residual relative to the best of its neighbours.

    Neighbours are the candidates within the matching tolerance of
    :mod:`spinetrack.compare` (the same head found at several planes or
    offsets); only one of them should become a detection.
    """
    from scipy.spatial import cKDTree

    from .compare import AXIAL_UM, LATERAL_UM

    scale = np.array([1.0 / AXIAL_UM, 1.0 / LATERAL_UM, 1.0 / LATERAL_UM])
    pos = feats[["z_um", "y_um", "x_um"]].to_numpy(float) * scale
    pairs = cKDTree(pos).query_pairs(1.0, output_type="ndarray")
    i, j = np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]
    out = {}
    for name, col in (("score_ratio", "score"), ("resid_ratio", "resid")):
        v = feats[col].to_numpy(float)
        best = v.copy()
        np.maximum.at(best, i, v[j])  # the best of each candidate and its neighbours
        out[name] = v / np.maximum(best, 1e-9)
    return out


def session_candidates(session, params=None, progress=None) -> pd.DataFrame:
    """Trace one session and return every candidate head with its measurements.

    Parameters
    ----------
    session : spinetrack.io.Session
    params : spinetrack.params.Params, optional
        ``trace`` and ``detect`` sections are used (defaults when None).
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    DataFrame
        ``_select(..., features=True)``: the detections columns plus ``keep``
        (the hand-set tests' verdict) and the measurements; empty when nothing
        was traced.
    """
    from .detect import _candidates, _select
    from .params import Params
    from .trace import trace_dendrites

    params = params or Params()
    tracing = trace_dendrites(session.image, session.voxel_size_um, params.trace, progress)
    cands, frame = _candidates(session.image, session.voxel_size_um, tracing, params.detect,
                               progress)
    if cands is None or not len(cands):
        return pd.DataFrame()
    return _select(cands, frame, params.detect, features=True)


def select_detections(feats: pd.DataFrame, keep: np.ndarray | None = None) -> pd.DataFrame:
    """Detections from candidates and a verdict, exactly as the detector finishes.

    ``keep=None`` is the hand-set tests' verdict with the gap fillers handled as
    :func:`spinetrack.detect.detect_spines` does, so ``select_detections(feats)``
    is the default detection. A given ``keep`` (a model's verdict) covers every
    candidate, gap fillers included, as the detector's model hook does.
    """
    from .detect import DETECTION_COLUMNS, empty_detections, finish_detections

    if not len(feats):
        return empty_detections()
    if keep is None:
        filled = feats["filled"].to_numpy(bool)
        keep = feats["keep"].to_numpy(bool) & ~filled
    else:
        keep, filled = np.asarray(keep, bool), np.zeros(len(feats), bool)
    return finish_detections(feats[DETECTION_COLUMNS].reset_index(drop=True), keep, filled,
                             _voxel_from(feats))


def _voxel_from(feats: pd.DataFrame) -> np.ndarray:
    """The voxel size of a candidate table (µm over pixel columns)."""
    out = []
    for px, um in (("z", "z_um"), ("y", "y_um"), ("x", "x_um")):
        p, u = feats[px].to_numpy(float), feats[um].to_numpy(float)
        ok = np.abs(p) > 1e-6
        out.append(float(np.median(u[ok] / p[ok])) if ok.any() else 1.0)
    return np.asarray(out)


# --------------------------------------------------------------------------- labels


def _excluded(spines: pd.DataFrame) -> np.ndarray:
    """A person's spines that do not count: marked ``is_bad``, or (synthetic) not visible."""
    out = np.zeros(len(spines), bool)
    if "is_bad" in spines.columns:
        out |= spines["is_bad"].fillna(False).to_numpy(bool)
    if "visible" in spines.columns:
        out |= ~spines["visible"].fillna(True).to_numpy(bool)
    return out


def label_candidates(feats: pd.DataFrame, spines: pd.DataFrame,
                     lines: pd.DataFrame | None = None, near_um: float = 3.0,
                     lateral_um: float | None = None, axial_um: float | None = None,
                     duplicates: str = "positive") -> np.ndarray:
    """Label one session's candidates from a person's spines of that session.

    Parameters
    ----------
    feats : DataFrame
        Candidates (:func:`session_candidates`): ``z_um, y_um, x_um, branch_id``.
    spines : DataFrame
        The person's spines of the same session: ``z_um, y_um, x_um`` in that
        session's own µm frame; optional ``is_bad`` (excluded by the person) and
        ``visible`` (synthetic truth: False is excluded).
    lines : DataFrame, optional
        The person's centre lines of the session (``z_um, y_um, x_um``, and
        ``branch_id, point`` to join consecutive points). When None, the region
        is the traced branches (``feats.branch_id``) that hold a positive.
    near_um : float
        Negatives lie within this distance (3-D, µm) of ``lines``.
    lateral_um, axial_um : float, optional
        Matching tolerances (default those of :mod:`spinetrack.compare`).
    duplicates : {"positive", "negative", "ignore"}
        Label of the candidates within the tolerance of a person's spine that
        are not its match (the same head found at another plane or offset;
        de-duplication keeps one of them). ``"positive"`` measured best on
        rr30a-dev (docs/learn.md).

    Returns
    -------
    ndarray of int
        1 positive, 0 negative, -1 left out of training. Candidates near a
        spine the person excluded are always left out.
    """
    from .compare import AXIAL_UM, LATERAL_UM, distance_to_lines, match_points

    lateral_um = LATERAL_UM if lateral_um is None else lateral_um
    axial_um = AXIAL_UM if axial_um is None else axial_um
    pos = ["z_um", "y_um", "x_um"]
    labels = np.full(len(feats), -1, dtype=np.int64)
    if not len(feats):
        return labels
    c_um = feats[pos].to_numpy(float)
    t_um = spines[pos].to_numpy(float) if len(spines) else np.zeros((0, 3))
    excluded = _excluded(spines)
    ci, ti = match_points(c_um, t_um, lateral_um, axial_um)
    # a candidate within the tolerance of any spine is not a clean negative
    near_spine = np.zeros(len(feats), bool)
    near_excluded = near_spine
    if len(t_um):
        from scipy.spatial import cKDTree

        scale = np.array([1.0 / axial_um, 1.0 / lateral_um, 1.0 / lateral_um])
        d, j = cKDTree(t_um * scale).query(c_um * scale)
        lat = np.hypot(*(c_um[:, 1:] - t_um[j, 1:]).T)
        near_spine = (np.abs(c_um[:, 0] - t_um[j, 0]) <= axial_um) & (lat <= lateral_um)
        near_excluded = near_spine & excluded[j]
    if lines is not None and len(lines):
        region = distance_to_lines(feats[pos].assign(session=0),
                                   lines.assign(session=0)) <= near_um
    else:
        good = ci[~excluded[ti]]
        region = feats["branch_id"].isin(set(feats["branch_id"].to_numpy()[good])).to_numpy()
    if duplicates not in ("positive", "negative", "ignore"):
        raise InputError(None, f"duplicates must be 'positive', 'negative' or 'ignore', got "
                               f"{duplicates!r}")
    labels[region & (~near_spine if duplicates == "ignore" else True)] = 0
    if duplicates == "positive":
        labels[near_spine] = 1
    labels[near_excluded] = -1
    labels[ci[excluded[ti]]] = -1
    labels[ci[~excluded[ti]]] = 1
    return labels


# --------------------------------------------------------------------------- classifiers


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50
                  ) -> dict[str, Any]:
    """L2-regularised logistic regression by Newton's method on standardized X."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = np.column_stack([np.ones(len(X)), (X - mean) / scale])
    w = np.zeros(Z.shape[1])
    penalty = np.full(Z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = _sigmoid(Z @ w)
        grad = Z.T @ (p - y) + penalty * w
        hess = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"mean": mean.tolist(), "scale": scale.tolist(), "intercept": float(w[0]),
            "coef": w[1:].tolist()}


def _logistic_margin(params: dict[str, Any], X: np.ndarray) -> np.ndarray:
    Z = (X - np.asarray(params["mean"])) / np.asarray(params["scale"])
    return params["intercept"] + Z @ np.asarray(params["coef"])


def _bin_edges(X: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Candidate split thresholds per feature: midpoints between quantiles."""
    edges = []
    for col in X.T:
        q = np.unique(np.quantile(col, np.linspace(0, 1, n_bins + 1)[1:-1]))
        edges.append(q)
    return edges


def _fit_tree(B: np.ndarray, edges, g: np.ndarray, h: np.ndarray, depth: int,
              l2: float, min_hess: float) -> list[dict[str, Any]]:
    """One regression tree on binned features (second-order boosting step).

    Nodes are a flat list: ``{"feature", "threshold", "left", "right"}`` or
    ``{"value"}``; node 0 is the root. A row goes left when its value is at
    most the threshold.
    """
    nodes: list[dict[str, Any]] = []

    def grow(rows: np.ndarray, level: int) -> int:
        me = len(nodes)
        nodes.append({})
        G, H = float(g[rows].sum()), float(h[rows].sum())
        best = None
        if level < depth and H >= 2 * min_hess:
            parent = G * G / (H + l2)
            for f in range(B.shape[1]):
                nb = len(edges[f]) + 1
                if nb < 2:
                    continue
                gs = np.cumsum(np.bincount(B[rows, f], g[rows], nb))[:-1]
                hs = np.cumsum(np.bincount(B[rows, f], h[rows], nb))[:-1]
                ok = (hs >= min_hess) & (H - hs >= min_hess)
                if not ok.any():
                    continue
                gain = gs ** 2 / (hs + l2) + (G - gs) ** 2 / (H - hs + l2) - parent
                gain[~ok] = -np.inf
                k = int(np.argmax(gain))
                if gain[k] > 1e-9 and (best is None or gain[k] > best[0]):
                    best = (float(gain[k]), f, k)
        if best is None:
            nodes[me] = {"value": -G / (H + l2)}
            return me
        _, f, k = best
        go_left = B[rows, f] <= k
        left = grow(rows[go_left], level + 1)
        right = grow(rows[~go_left], level + 1)
        nodes[me] = {"feature": f, "threshold": float(edges[f][k]), "left": left,
                     "right": right}
        return me

    grow(np.arange(len(g)), 0)
    return nodes


def _tree_predict(nodes: list[dict[str, Any]], X: np.ndarray) -> np.ndarray:
    out = np.zeros(len(X))
    stack = [(0, np.arange(len(X)))]
    while stack:
        i, rows = stack.pop()
        node = nodes[i]
        if "value" in node:
            out[rows] = node["value"]
            continue
        left = X[rows, node["feature"]] <= node["threshold"]
        stack.append((node["left"], rows[left]))
        stack.append((node["right"], rows[~left]))
    return out


def _fit_boosting(X: np.ndarray, y: np.ndarray, n_trees: int = 60, depth: int = 2,
                  learning_rate: float = 0.1, l2: float = 1.0, min_hess: float = 5.0,
                  n_bins: int = 32) -> dict[str, Any]:
    """Gradient boosting of shallow trees on the logistic loss (Newton steps)."""
    edges = _bin_edges(X, n_bins)
    B = np.column_stack([np.searchsorted(e, col, side="left") for e, col in zip(edges, X.T)])
    prior = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    base = math.log(prior / (1 - prior))
    margin = np.full(len(X), base)
    trees = []
    for _ in range(n_trees):
        p = _sigmoid(margin)
        g, h = p - y, np.maximum(p * (1 - p), 1e-6)
        nodes = _fit_tree(B, edges, g, h, depth, l2, min_hess)
        for node in nodes:
            if "value" in node:
                node["value"] *= learning_rate
        margin += _tree_predict(nodes, X)
        trees.append(nodes)
    return {"base": base, "learning_rate": learning_rate, "depth": depth, "trees": trees}


def _boosting_margin(params: dict[str, Any], X: np.ndarray) -> np.ndarray:
    margin = np.full(len(X), float(params["base"]))
    for nodes in params["trees"]:
        margin += _tree_predict(nodes, X)
    return margin


_FIT = {"boosting": _fit_boosting, "logistic": _fit_logistic}
_MARGIN = {"boosting": _boosting_margin, "logistic": _logistic_margin}


# --------------------------------------------------------------------------- the model


@dataclass
class DetectorModel:
    """A classifier that accepts or rejects the detector's candidate heads.

    Attributes
    ----------
    kind : str
        ``"boosting"`` or ``"logistic"``.
    features : list of str
        Input columns, in order (:data:`FEATURES` when trained here).
    params : dict
        The fitted classifier (plain JSON).
    threshold : float
        Candidates with a probability at least this are accepted.
    provenance : dict
        How it was trained: inputs, label counts, parameters, date.
    combine : str
        ``"replace"``: the model's verdict replaces the hand-set tests';
        ``"veto"``: keep what both accept; ``"add"``: keep what either accepts.
    """

    kind: str
    features: list[str]
    params: dict[str, Any]
    threshold: float = 0.5
    provenance: dict[str, Any] = field(default_factory=dict)
    combine: str = "replace"

    def probability(self, X: pd.DataFrame) -> np.ndarray:
        """Probability that each row (columns :attr:`features`) is a spine."""
        missing = [c for c in self.features if c not in X.columns]
        if missing:
            raise InputError(None, f"the detector model needs the columns {missing}")
        values = X[self.features].to_numpy(float)
        values = np.where(np.isfinite(values), values, 0.0)
        return _sigmoid(_MARGIN[self.kind](self.params, values))

    def accepts(self, X: pd.DataFrame) -> np.ndarray:
        """Boolean verdict per row: probability at least :attr:`threshold`, combined
        with the hand-set tests' verdict (column ``hand_keep``) as :attr:`combine` says."""
        hand = X["hand_keep"].to_numpy(bool) if self.combine != "replace" else None
        return _combine(self.probability(X) >= self.threshold, hand, self.combine)

    def to_dict(self) -> dict[str, Any]:
        return {"format": MODEL_FORMAT, "version": MODEL_VERSION, "kind": self.kind,
                "features": list(self.features), "threshold": float(self.threshold),
                "combine": self.combine, "params": self.params, "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: Any, path: str | Path | None = None) -> DetectorModel:
        """Check and read a model dictionary; one-line :class:`InputError` if malformed."""
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise InputError(path, f"is not a spinetrack detector model (no \"format\": "
                                   f"\"{MODEL_FORMAT}\")")
        if data.get("version") != MODEL_VERSION:
            raise InputError(path, f"detector model version {data.get('version')!r} is not "
                                   f"supported (expected {MODEL_VERSION})")
        kind = data.get("kind")
        if kind not in MODEL_KINDS:
            raise InputError(path, f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
        features = data.get("features")
        if not isinstance(features, list) or not features or not all(
                isinstance(f, str) for f in features):
            raise InputError(path, "the model's \"features\" must be a list of column names")
        try:
            threshold = float(data.get("threshold"))
        except (TypeError, ValueError):
            raise InputError(path, "the model's \"threshold\" is not a number") from None
        if not 0.0 <= threshold <= 1.0:
            raise InputError(path, f"the model's threshold {threshold} is not in [0, 1]")
        combine = data.get("combine", "replace")
        if combine not in COMBINE:
            raise InputError(path, f"unknown \"combine\" {combine!r}; expected one of "
                                   f"{COMBINE}")
        if combine != "replace" and "hand_keep" not in features:
            raise InputError(path, f"combine {combine!r} needs the feature \"hand_keep\"")
        model = cls(kind, list(features), data.get("params"), threshold,
                    dict(data.get("provenance") or {}), combine)
        try:  # a malformed classifier fails here, not in the middle of a run
            model.probability(pd.DataFrame(np.zeros((1, len(features))), columns=features))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InputError(path, f"the model's classifier is malformed ({type(exc).__name__}"
                                   f": {exc})") from None
        return model

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (atomically)."""
        return write_json_atomic(Path(path), self.to_dict())


def load_model(path: str | Path) -> DetectorModel:
    """Read a model written by :meth:`DetectorModel.save`.

    Raises
    ------
    InputError
        One line naming the file: missing, not JSON, or not a valid model.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "no such detector model file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"is not a JSON detector model ({str(exc).splitlines()[0]})"
                         ) from None
    return DetectorModel.from_dict(data, path)


_CACHE: dict[tuple[str, float], DetectorModel] = {}


def cached_model(path: str | Path) -> DetectorModel:
    """:func:`load_model`, read once per file and modification time."""
    path = Path(path)
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError:
        raise InputError(path, "no such detector model file") from None
    if key not in _CACHE:
        _CACHE[key] = load_model(path)
    return _CACHE[key]


def learned_keep(model: DetectorModel | str | Path, feats: pd.DataFrame) -> np.ndarray:
    """The model's verdict on each candidate of ``_select(..., features=True)``.

    ``model`` may be a path; loaded models are cached by path and modification time.
    """
    path = None
    if not isinstance(model, DetectorModel):
        path = Path(model)
        model = cached_model(path)
    if not len(feats):
        return np.zeros(0, bool)
    try:
        return model.accepts(candidate_features(feats))
    except InputError as exc:
        raise InputError(path, exc.problem) from None


def detection_counts(detections: pd.DataFrame, spines: pd.DataFrame,
                     lines: pd.DataFrame | None = None, near_um: float = 3.0,
                     region_branches=None) -> tuple[int, int, int]:
    """True positives, false positives and misses of one session's detections.

    Matching as in :mod:`spinetrack.compare` (one to one, 1.2 µm laterally,
    2.5 µm axially). A person's spine marked ``is_bad`` (or ``visible`` False)
    and a detection matched to one count for nothing. With ``lines``, only
    spines and unmatched detections within ``near_um`` of them count; without,
    only unmatched detections on ``region_branches`` (session-local branch ids)
    are false positives.
    """
    from .compare import distance_to_lines, match_points

    pos = ["z_um", "y_um", "x_um"]
    det = detections[detections["kind"] == "spine"] if "kind" in detections else detections
    excluded = _excluded(spines)
    counted = ~excluded
    d_in = np.ones(len(det), bool)
    if lines is not None and len(lines):
        counted &= distance_to_lines(spines[pos].assign(session=0),
                                     lines.assign(session=0)) <= near_um
        d_in = distance_to_lines(det[pos].assign(session=0), lines.assign(session=0)) <= near_um
    elif region_branches is not None:
        d_in = det["branch_id"].isin(set(region_branches)).to_numpy()
    di, ti = match_points(det[pos].to_numpy(float), spines[pos].to_numpy(float))
    tp = int(counted[ti].sum())
    d_matched = np.zeros(len(det), bool)
    d_matched[di] = True
    fp = int((~d_matched & d_in).sum())
    t_matched = np.zeros(len(spines), bool)
    t_matched[ti] = True
    fn = int((counted & ~t_matched).sum())
    return tp, fp, fn


def _threshold(prob: np.ndarray, y: np.ndarray) -> float:
    """The threshold that maximises F1 of the labelled candidates."""
    grid = np.round(np.arange(0.10, 0.91, 0.02), 2)
    best, best_f1 = 0.5, -1.0
    for t in grid:
        pred = prob >= t
        tp = float((pred & (y == 1)).sum())
        fp = float((pred & (y == 0)).sum())
        fn = float((~pred & (y == 1)).sum())
        f1 = 2 * tp / max(2 * tp + fp + fn, 1.0)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(t), f1
    return best


def fit_model(X: pd.DataFrame, y: np.ndarray, kind: str = "boosting",
              groups: np.ndarray | None = None, n_folds: int = 5,
              provenance: dict[str, Any] | None = None, progress=None,
              threshold: float | None = None) -> DetectorModel:
    """Fit a classifier and choose its threshold on out-of-fold predictions.

    Parameters
    ----------
    X : DataFrame
        One row per labelled candidate; every column is a feature.
    y : array of 0/1
    kind : {"boosting", "logistic"}
    groups : array, optional
        Rows of one group (e.g. one branch) stay in the same fold, so the
        threshold is chosen on predictions for branches the fold did not see.
        Default: each row its own group.
    n_folds : int
        Folds for the threshold (fewer when there are fewer groups; with one
        group the threshold is 0.5).
    provenance : dict, optional
        Stored with the model.
    progress : callable, optional
        ``progress(stage, done, total)``, once per fold.
    threshold : float, optional
        Use this threshold (no out-of-fold fits).

    Returns
    -------
    DetectorModel
    """
    if kind not in MODEL_KINDS:
        raise InputError(None, f"unknown model kind {kind!r}; choose one of {MODEL_KINDS}")
    y = np.asarray(y, float)
    if len(y) != len(X):
        raise InputError(None, "features and labels differ in length")
    if (y == 1).sum() < 2 or (y == 0).sum() < 2:
        raise InputError(None, f"too few labelled candidates to learn from "
                               f"({int((y == 1).sum())} positive, {int((y == 0).sum())} "
                               "negative; need at least 2 of each)")
    values = np.where(np.isfinite(X.to_numpy(float)), X.to_numpy(float), 0.0)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    k = min(n_folds, len(np.unique(groups))) if threshold is None else 0
    given = threshold is not None
    threshold = 0.5 if threshold is None else float(threshold)
    if k >= 2:
        prob = _oof_probability(values, y.astype(np.int64), groups, kind, n_folds, progress)
        done = np.isfinite(prob)
        if done.any():
            threshold = _threshold(prob[done], y[done])
    params = _FIT[kind](values, y)
    prov = dict(provenance or {})
    prov.setdefault("n_positive", int((y == 1).sum()))
    prov.setdefault("n_negative", int((y == 0).sum()))
    prov.setdefault("threshold_from", "given" if given else
                    f"{k}-fold out-of-fold F1 over groups" if k >= 2 else "default 0.5")
    prov.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return DetectorModel(kind, list(X.columns), params, threshold, prov)


# --------------------------------------------------------------------------- annotations


def read_annotations(path: str | Path, lines: str | Path | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A person's spines (and centre lines) from a table or a folder.

    Parameters
    ----------
    path : path
        A spine table (CSV, or Parquet; ``session, z_um, y_um, x_um``, optional
        ``branch_id, is_bad``), or a folder: a results folder corrected in
        napari (its ``spines.csv`` and ``lines.csv``), an rr30a-style truth
        folder (``truth_spines.csv``, ``truth_lines.csv``) or a synthetic truth.
    lines : path, optional
        A centre-line table (``session, z_um, y_um, x_um``, optional
        ``branch_id, point``); overrides a folder's lines.

    Returns
    -------
    (spines, lines or None)
        A folder's or table's lines are restricted to the branches (per session)
        that hold at least one of the person's spines, when both tables name
        branches: a person corrects the branches they look at.
    """
    from .compare import SeriesTables, load_tables

    path = Path(path)
    if path.is_dir():
        tables = load_tables(path)
        spines, found_lines = tables.spines, tables.lines
        summary = path / "summary.json"
        if (path / "edits.json").exists():
            spines.attrs["corrections"] = _warn_about_corrections(path, spines)
        elif summary.exists() and _automatic(summary):
            log.warning("%s holds the detector's own, uncorrected calls (no edits.json): a "
                        "model learned from them only imitates the detector", path)
    else:
        spines = _read_table(path)
        found_lines = None
        try:
            spines = SeriesTables.from_frames(spines, path=path).spines
        except InputError as exc:
            raise InputError(path, exc.problem) from None
    if lines is not None:
        found_lines = _read_table(Path(lines))
        need = [c for c in ("session", "z_um", "y_um", "x_um") if c not in found_lines.columns]
        if need:
            raise InputError(lines, f"lacks the columns {need}")
    if found_lines is not None and "branch_id" in found_lines.columns and \
            "branch_id" in spines.columns:
        held = set(zip(spines["session"].astype(int), spines["branch_id"].astype(int)))
        key = zip(found_lines["session"].astype(int), found_lines["branch_id"].astype(int))
        found_lines = found_lines[[k in held for k in key]].reset_index(drop=True)
    return spines, found_lines


#: Below this share of a project's spines changed by a person's corrections, ``learn``
#: warns that the model would mostly imitate the detector. A full review of the
#: automatic calls on rr30a-dev changes about a quarter of them (the detector misses
#: or adds about a quarter of a person's spines), so a tenth is a partial review.
SMALL_CORRECTED_SHARE = 0.1


def _positions(table: pd.DataFrame) -> pd.DataFrame:
    cols = ["session", "z_um", "y_um", "x_um"]
    return table[cols].astype(float).round(3).drop_duplicates()


def _automatic(summary: Path) -> bool:
    """Whether a ``summary.json`` says its calls are the detector's (unreadable: no)."""
    from .report import unchecked

    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and unchecked(data)


def corrected_spines(folder: str | Path, spines: pd.DataFrame | None = None
                     ) -> dict[str, Any]:
    """How much of a corrected project (napari) a person's edits changed.

    Compares the project's ``spines.csv`` (the person's corrections applied)
    with ``auto/spines.csv`` (the detector's calls they were applied to), by
    position per session.

    Parameters
    ----------
    folder : path
        A results folder with ``edits.json`` (and ``auto/`` from a re-run or
        napari).
    spines : DataFrame, optional
        Its ``spines.csv`` when already read (default: read here).

    Returns
    -------
    dict
        ``n_edits`` (in edits.json), ``n_spines`` (rows of spines.csv),
        ``n_added`` (spines placed by the person: added or moved to),
        ``n_removed`` (the detector's spines the person deleted or moved away)
        and ``share_changed`` (``(n_added + n_removed) / n_spines``); the last
        three are None without ``auto/spines.csv``.
    """
    from .edits import load_edits

    folder = Path(folder)
    out: dict[str, Any] = {"n_edits": len(load_edits(folder)), "n_spines": None,
                           "n_added": None, "n_removed": None, "share_changed": None}
    try:
        final = _positions(pd.read_csv(folder / "spines.csv") if spines is None else spines)
        auto = _positions(pd.read_csv(folder / "auto" / "spines.csv"))
    except (OSError, ValueError, KeyError):
        return out
    both = final.merge(auto, how="outer", indicator=True)["_merge"]
    added, removed = int((both == "left_only").sum()), int((both == "right_only").sum())
    out.update(n_spines=len(final), n_added=added, n_removed=removed,
               share_changed=(added + removed) / len(final) if len(final) else None)
    return out


def _warn_about_corrections(folder: Path, spines: pd.DataFrame) -> dict[str, Any]:
    """Say how many spines a project's corrections changed; warn when few did."""
    c = corrected_spines(folder, spines)
    edits = f"{c['n_edits']} correction{'' if c['n_edits'] == 1 else 's'} (edits.json)"
    if c["share_changed"] is None:
        log.warning("%s: %s; no auto/spines.csv to tell how many spines they changed; the "
                    "others are the detector's calls unless a person checked them", folder, edits)
        return c
    changed = c["n_added"] + c["n_removed"]
    text = (f"{folder}: {edits} changed {changed} of its {c['n_spines']} spines "
            f"({c['n_added']} placed by the person, {c['n_removed']} of the detector's removed)")
    if c["share_changed"] < SMALL_CORRECTED_SHARE:
        log.warning("%s; the other %d are the detector's own placements, so a model learned "
                    "from them mostly imitates the detector. Correct the sessions you learn "
                    "from fully (a full review changes about a quarter), or learn from a "
                    "person's own annotation", text, c["n_spines"] - c["n_added"])
    else:
        log.info("%s", text)
    return c


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, ValueError, ImportError) as exc:
        raise InputError(path, f"is not a readable table ({str(exc).splitlines()[0]})"
                         ) from None


def learn_detector(sessions, spines: pd.DataFrame, lines: pd.DataFrame | None = None,
                   annotation_sessions: list[int] | None = None, params=None,
                   kind: str = "boosting", near_um: float = 3.0, provenance=None,
                   progress=None, combine: str = "veto") -> DetectorModel:
    """Learn the detector's selection from a person's spines of some sessions.

    Parameters
    ----------
    sessions : sequence of spinetrack.io.Session
        The corrected sessions' images.
    spines : DataFrame
        The person's spines (``session, z_um, y_um, x_um``; µm in each session's
        own image frame), e.g. from :func:`read_annotations`.
    lines : DataFrame, optional
        The person's centre lines; without them negatives come from the traced
        branches that hold a person's spine.
    annotation_sessions : list of int, optional
        The ``session`` number in ``spines`` of each image (default 0, 1, ...).
    params : spinetrack.params.Params, optional
        Tracing and detection parameters (their candidate search is what the
        model selects from; use the same ones when applying the model).
    kind : {"boosting", "logistic"}
    near_um : float
        Negatives lie within this distance of ``lines`` (µm).
    provenance : dict, optional
        Extra provenance to store (e.g. file names).
    combine : {"veto", "replace", "add"}
        How the model's verdict meets the hand-set tests' (:class:`DetectorModel`);
        ``"veto"`` (only remove what the tests keep) measured safest on rr30a-dev.
    progress : callable, optional

    Returns
    -------
    DetectorModel

    Raises
    ------
    InputError
        When the annotation has none of the sessions, or too few labels.
    """
    from .params import Params

    params = params or Params()
    annotation_sessions = (list(range(len(sessions))) if annotation_sessions is None
                           else [int(s) for s in annotation_sessions])
    if len(annotation_sessions) != len(sessions):
        raise InputError(None, f"{len(sessions)} sessions but {len(annotation_sessions)} "
                               "annotation session numbers")
    present = set(spines["session"].astype(int))
    absent = [s for s in annotation_sessions if s not in present]
    if absent:
        raise InputError(None, f"the person's spines have no rows for sessions {absent}")
    cands = []
    for k, session in enumerate(sessions):
        report(progress, "learn: candidates", k, len(sessions))
        cands.append(session_candidates(session, params))
    report(progress, "learn: candidates", len(sessions), len(sessions))
    return learn_from_candidates(cands, spines, lines, annotation_sessions, kind=kind,
                                 near_um=near_um, combine=combine, provenance={
                                     "trained_on": [getattr(s, "name", str(k))
                                                    for k, s in enumerate(sessions)],
                                     "trace": params.trace.to_dict(),
                                     "detect": params.detect.to_dict(),
                                     **(provenance or {})}, progress=progress)


def learn_from_candidates(cands: list[pd.DataFrame], spines: pd.DataFrame,
                          lines: pd.DataFrame | None, annotation_sessions: list[int],
                          kind: str = "boosting", near_um: float = 3.0,
                          n_folds: int = 5, provenance=None, progress=None,
                          combine: str = "veto") -> DetectorModel:
    """:func:`learn_detector` on candidates already found (:func:`session_candidates`).

    The threshold is the one that maximises the F1 of the *detections* (after
    de-duplication, scored as :func:`detection_counts`) made from out-of-fold
    probabilities, folds being whole traced branches.
    """
    if combine not in COMBINE:
        raise InputError(None, f"unknown combine {combine!r}; choose one of {COMBINE}")
    X_all = [candidate_features(f) if len(f) else pd.DataFrame(columns=list(FEATURES))
             for f in cands]
    labels = [np.full(len(f), -1) if not len(f) else
              _session_labels(f, spines, lines, s, near_um)
              for f, s in zip(cands, annotation_sessions)]
    groups = [np.array([f"{s}:{b}" for b in f["branch_id"].to_numpy()]) if len(f)
              else np.zeros(0, str) for f, s in zip(cands, annotation_sessions)]
    values, y = np.vstack([x.to_numpy(float) for x in X_all]), np.concatenate(labels)
    prob = _oof_probability(values, y, np.concatenate(groups), kind, n_folds, progress)
    threshold, oof_f1 = 0.5, None
    if np.isfinite(prob).any():
        threshold, oof_f1 = _detection_threshold(cands, np.split(prob, np.cumsum(
            [len(f) for f in cands])[:-1]), labels, spines, lines, annotation_sessions,
            near_um, combine)
    prov = {
        "annotation_sessions": list(annotation_sessions),
        "n_person_spines": int(spines["session"].isin(annotation_sessions).sum()),
        "negatives_from": "within %g µm of the person's lines" % near_um if lines is not None
        and len(lines) else "traced branches holding a person's spine",
        "threshold_from": "out-of-fold detection F1 (folds: traced branches)",
        "spinetrack_version": __version__,
        "out_of_fold_f1": oof_f1,
        **({"corrections": spines.attrs["corrections"]}
           if isinstance(spines.attrs.get("corrections"), dict) else {}),
        **(provenance or {}),
    }
    use = y >= 0  # labelled candidates
    model = fit_model(pd.DataFrame(values[use], columns=list(FEATURES)), y[use], kind=kind,
                      threshold=threshold, provenance=prov)
    model.combine = combine
    return model


def _session_labels(feats, spines, lines, session, near_um):
    sp = spines[spines["session"] == session]
    ln = None if lines is None else lines[lines["session"] == session]
    return label_candidates(feats, sp, ln, near_um=near_um)


def _oof_probability(values, labels, groups, kind, n_folds, progress=None) -> np.ndarray:
    """Out-of-fold probability of every candidate (NaN where a fold could not be fitted)."""
    values = np.where(np.isfinite(values), values, 0.0)
    prob = np.full(len(values), np.nan)
    uniq = np.unique(groups)
    k = min(n_folds, len(uniq))
    if k < 2:
        return prob
    fold_of = {g: i % k for i, g in enumerate(np.random.default_rng(0).permutation(uniq))}
    fold = np.array([fold_of[g] for g in groups])
    for i in range(k):
        report(progress, "learn: folds", i, k)
        train = (fold != i) & (labels >= 0)
        if (labels[train] == 1).sum() < 2 or (labels[train] == 0).sum() < 2:
            continue
        test = fold == i
        fitted = _FIT[kind](values[train], labels[train].astype(float))
        prob[test] = _sigmoid(_MARGIN[kind](fitted, values[test]))
    report(progress, "learn: folds", k, k)
    return prob


_GRID = np.round(np.concatenate([np.arange(0.02, 0.1, 0.02), np.arange(0.1, 0.91, 0.05)]), 2)


def _detection_threshold(cands, probs, labels, spines, lines, sessions, near_um,
                         combine="replace") -> tuple[float, float]:
    """The threshold with the best detection F1 over the sessions, and that F1."""
    best, best_f1 = 0.5, -1.0
    for t in _GRID:
        tp = fp = fn = 0
        for feats, prob, lab, s in zip(cands, probs, labels, sessions):
            if not len(feats):
                continue
            hand = feats["keep"].to_numpy(bool)
            keep = np.where(np.isfinite(prob), _combine(prob >= t, hand, combine), hand)
            det = select_detections(feats, keep)
            sp = spines[spines["session"] == s]
            ln = None if lines is None else lines[lines["session"] == s]
            region = set(feats["branch_id"].to_numpy()[lab == 1])
            a, b, c = detection_counts(det, sp, ln, near_um, region)
            tp, fp, fn = tp + a, fp + b, fn + c
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(t), f1
    return best, best_f1
