"""Procedural labelled point clouds — a stand-in for smoke runs and tests. This is **not**
ModelNet40.

* :func:`make_synthetic_pointclouds` — a balanced, labelled set of surface point clouds in the
  structure the ModelNet40 loaders return (:mod:`ace.data.modelnet40.files`).
* :data:`SHAPES` — the shape classes, in label order (``shape_names`` are ``"synthetic_<shape>"``).

Each sample is drawn on the surface of one of :data:`SHAPES` with random class-specific
proportions (the ranges overlap on purpose: a flattened sphere, a short capsule and a plump
ellipsoid look alike, and so do a short cylinder and a box, or a cone and a pyramid), then gets
small Gaussian noise, a Haar-random SO(3) pose, and the ModelNet40 loader's normalisation
(centred, scaled onto the unit sphere). Points are not exactly area-uniform on every surface
(torus and ellipsoids are sampled through their parametrisation). Same ``seed`` → bit-identical
arrays; train and test come from disjoint random streams (``SeedSequence(seed).spawn(2)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SHAPES", "make_synthetic_pointclouds"]

Sampler = Callable[[np.random.Generator, int, int], np.ndarray]


def _u(rng: np.random.Generator, m: int, lo: float, hi: float) -> np.ndarray:
    """(m, 1) uniform per-sample parameters."""
    return rng.uniform(lo, hi, size=(m, 1))


def _choose(rng: np.random.Generator, areas: np.ndarray, p: int) -> np.ndarray:
    """(m, P) piece index per point, drawn ∝ the per-sample piece ``areas`` (m, K)."""
    cum = np.cumsum(areas, axis=1)
    u = rng.random((areas.shape[0], p)) * cum[:, -1:]
    return (u[..., None] >= cum[:, None, :]).sum(-1).clip(max=areas.shape[1] - 1)


def _pick(pieces: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Select per point among K candidate (m, P, 3) arrays."""
    return np.take_along_axis(np.stack(pieces, axis=2), idx[..., None, None], axis=2)[:, :, 0]


def _unit(rng: np.random.Generator, m: int, p: int) -> np.ndarray:
    v = rng.normal(size=(m, p, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _disc(rng: np.random.Generator, m: int, p: int, r: np.ndarray, z: np.ndarray,
          r_in: np.ndarray | float = 0.0) -> np.ndarray:
    """Area-uniform points on the annulus r_in <= ρ <= r at height z (per-sample (m, 1))."""
    rho = np.sqrt(rng.uniform(size=(m, p)) * (r**2 - r_in**2) + r_in**2)
    phi = rng.uniform(0, 2 * np.pi, size=(m, p))
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), np.broadcast_to(z, (m, p))], -1)


def _triangles(rng: np.random.Generator, tri: np.ndarray, p: int) -> np.ndarray:
    """Area-uniform points on a per-sample union of triangles ``tri`` (m, K, 3 vertices, 3)."""
    m = tri.shape[0]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, :, 1] - tri[:, :, 0],
                                         tri[:, :, 2] - tri[:, :, 0]), axis=-1)
    idx = _choose(rng, area, p)
    a, b, c = (np.take_along_axis(tri[:, :, j], idx[..., None], axis=1) for j in range(3))
    s, t = np.sqrt(rng.uniform(size=(m, p, 1))), rng.uniform(size=(m, p, 1))
    return (1 - s) * a + s * (1 - t) * b + s * t * c


def _box_surface(rng: np.random.Generator, half: np.ndarray, p: int) -> np.ndarray:
    """Area-uniform points on the surface of boxes with half-extents ``half`` (m, 3)."""
    m = half.shape[0]
    face_area = np.stack([half[:, 1] * half[:, 2], half[:, 0] * half[:, 2],
                          half[:, 0] * half[:, 1]], axis=1)
    axis = _choose(rng, face_area, p)
    pts = rng.uniform(-1, 1, size=(m, p, 3))
    sign = np.where(rng.random((m, p)) < 0.5, -1.0, 1.0)
    np.put_along_axis(pts, axis[..., None], sign[..., None], axis=2)
    return pts * half[:, None, :]


def _sphere(rng, m, p):
    return _unit(rng, m, p) * np.hstack([np.ones((m, 1)), _u(rng, m, 0.85, 1.0),
                                         _u(rng, m, 0.85, 1.0)])[:, None, :]


def _ellipsoid(rng, m, p):
    b = _u(rng, m, 0.45, 0.9)
    c = b * _u(rng, m, 0.55, 1.0)
    return _unit(rng, m, p) * np.hstack([np.ones((m, 1)), b, c])[:, None, :]


def _capsule(rng, m, p):
    r, half_len = _u(rng, m, 0.4, 0.75), _u(rng, m, 0.15, 0.9)
    areas = np.hstack([4 * np.pi * r * half_len, 2 * np.pi * r**2, 2 * np.pi * r**2])
    idx = _choose(rng, areas, p)
    phi = rng.uniform(0, 2 * np.pi, size=(m, p))
    side = np.stack([r * np.cos(phi), r * np.sin(phi),
                     rng.uniform(-1, 1, size=(m, p)) * half_len], -1)
    cap = _unit(rng, m, p) * r[..., None]
    cap[..., 2] = np.abs(cap[..., 2])  # upper hemisphere
    shift = np.concatenate([np.zeros((m, 1, 2)), half_len[..., None]], -1)
    top_cap, bottom_cap = cap + shift, -cap - shift
    return _pick([side, top_cap, bottom_cap], idx)


def _cylinder(rng, m, p):
    r, h = _u(rng, m, 0.35, 0.9), _u(rng, m, 0.35, 1.1)
    idx = _choose(rng, np.hstack([4 * np.pi * r * h, np.pi * r**2, np.pi * r**2]), p)
    phi = rng.uniform(0, 2 * np.pi, size=(m, p))
    side = np.stack([r * np.cos(phi), r * np.sin(phi), rng.uniform(-1, 1, (m, p)) * h], -1)
    return _pick([side, _disc(rng, m, p, r, h), _disc(rng, m, p, r, -h)], idx)


def _box(rng, m, p):
    half = np.hstack([np.ones((m, 1)), _u(rng, m, 0.45, 1.0), _u(rng, m, 0.3, 0.9)])
    return _box_surface(rng, half, p)


def _cone(rng, m, p):
    r, h = _u(rng, m, 0.4, 1.0), _u(rng, m, 0.7, 2.0)
    slant = np.sqrt(r**2 + h**2)
    idx = _choose(rng, np.hstack([np.pi * r * slant, np.pi * r**2]), p)
    t = np.sqrt(rng.uniform(size=(m, p)))  # distance from the apex, area-uniform
    phi = rng.uniform(0, 2 * np.pi, size=(m, p))
    side = np.stack([t * r * np.cos(phi), t * r * np.sin(phi), h * (1 - t)], -1)
    return _pick([side, _disc(rng, m, p, r, np.zeros((m, 1)))], idx)


def _torus(rng, m, p):
    tube = _u(rng, m, 0.15, 0.5)
    theta, phi = (rng.uniform(0, 2 * np.pi, size=(m, p)) for _ in range(2))
    ring = 1 + tube * np.cos(theta)
    return np.stack([ring * np.cos(phi), ring * np.sin(phi), tube * np.sin(theta)], -1)


def _helix(rng, m, p):
    turns, height, tube = _u(rng, m, 1.5, 3.5), _u(rng, m, 1.0, 3.0), _u(rng, m, 0.08, 0.22)
    t = rng.uniform(size=(m, p))
    w = 2 * np.pi * turns
    a = w * t
    centre = np.stack([np.cos(a), np.sin(a), height * t], -1)
    tangent = np.stack([-w * np.sin(a), w * np.cos(a), np.broadcast_to(height, (m, p))], -1)
    tangent /= np.linalg.norm(tangent, axis=-1, keepdims=True)
    normal = np.stack([-np.cos(a), -np.sin(a), np.zeros((m, p))], -1)
    binormal = np.cross(tangent, normal)
    psi = rng.uniform(0, 2 * np.pi, size=(m, p, 1))
    return centre + tube[..., None] * (np.cos(psi) * normal + np.sin(psi) * binormal)


def _dumbbell(rng, m, p):
    r1, r2 = _u(rng, m, 0.45, 0.8), _u(rng, m, 0.45, 0.8)
    gap = _u(rng, m, -0.25, 0.8)
    idx = _choose(rng, np.hstack([r1**2, r2**2]), p)
    offset = np.concatenate([np.zeros((m, 1, 2)), (r1 + r2 + gap)[..., None]], -1)
    return _pick([_unit(rng, m, p) * r1[..., None],
                  _unit(rng, m, p) * r2[..., None] + offset], idx)


def _annulus(rng, m, p):
    return _disc(rng, m, p, np.ones((m, 1)), np.zeros((m, 1)), r_in=_u(rng, m, 0.0, 0.6))


def _pyramid(rng, m, p):
    a, b, h = np.ones((m, 1)), _u(rng, m, 0.6, 1.0), _u(rng, m, 0.7, 2.0)
    z = np.zeros((m, 1))
    corners = [np.hstack(c) for c in ((a, b, z), (-a, b, z), (-a, -b, z), (a, -b, z))]
    apex = np.hstack([z, z, h])
    tri = [np.stack([corners[i], corners[(i + 1) % 4], apex], 1) for i in range(4)]
    tri += [np.stack([corners[0], corners[1], corners[2]], 1),
            np.stack([corners[0], corners[2], corners[3]], 1)]
    return _triangles(rng, np.stack(tri, 1), p)


def _cross(rng, m, p):
    width, depth = _u(rng, m, 0.15, 0.4), _u(rng, m, 0.15, 0.4)
    arm1 = np.hstack([np.ones((m, 1)), width, depth])
    arm2 = np.hstack([width, _u(rng, m, 0.5, 1.0), depth])
    area = lambda e: e[:, 0] * e[:, 1] + e[:, 0] * e[:, 2] + e[:, 1] * e[:, 2]  # noqa: E731
    idx = _choose(rng, np.stack([area(arm1), area(arm2)], 1), p)
    return _pick([_box_surface(rng, arm1, p), _box_surface(rng, arm2, p)], idx)


def _bowl(rng, m, p):
    cos_max = np.cos(_u(rng, m, 0.35 * np.pi, 0.65 * np.pi))  # spherical cap, open
    z = rng.uniform(size=(m, p)) * (1 - cos_max) + cos_max  # area-uniform on the cap
    phi = rng.uniform(0, 2 * np.pi, size=(m, p))
    rho = np.sqrt(np.clip(1 - z**2, 0, None))
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], -1)


def _tetrahedron(rng, m, p):
    base = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64)
    v = base[None] + rng.uniform(-0.35, 0.35, size=(m, 4, 3))
    faces = [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)]
    return _triangles(rng, np.stack([v[:, list(f)] for f in faces], 1), p)


#: shape name -> vectorised surface sampler ``(rng, m, P) -> (m, P, 3)``, in label order; the
#: default ``num_classes=10`` uses the first ten
SHAPES: dict[str, Sampler] = {
    "sphere": _sphere, "ellipsoid": _ellipsoid, "capsule": _capsule, "cylinder": _cylinder,
    "box": _box, "cone": _cone, "torus": _torus, "helix": _helix, "dumbbell": _dumbbell,
    "annulus": _annulus, "pyramid": _pyramid, "cross": _cross, "bowl": _bowl,
    "tetrahedron": _tetrahedron,
}


def _rotations(rng: np.random.Generator, m: int) -> np.ndarray:
    """(m, 3, 3) Haar-random rotations (unit quaternions from a 4-d Gaussian)."""
    q = rng.normal(size=(m, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


def _split(rng: np.random.Generator, n: int, num_points: int, names: list[str]
           ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    k = len(names)
    counts = [n // k + (c < n % k) for c in range(k)]
    clouds, labels, ids = [], [], []
    for c, (name, count) in enumerate(zip(names, counts)):
        if count:
            clouds.append(SHAPES[name](rng, count, num_points))
            labels.append(np.full(count, c, dtype=np.int64))
            ids += [f"synthetic_{name}_{j + 1:04d}" for j in range(count)]
    if not clouds:
        return np.empty((0, num_points, 3), np.float32), np.empty(0, np.int64), []
    pts, lab = np.concatenate(clouds), np.concatenate(labels)
    pts = pts + rng.normal(size=pts.shape) * rng.uniform(0.005, 0.02, size=(n, 1, 1))
    pts = pts - pts.mean(axis=1, keepdims=True)
    pts = pts @ _rotations(rng, n).transpose(0, 2, 1)
    pts = pts.astype(np.float32)
    pts -= pts.mean(axis=1, keepdims=True)  # as the ModelNet40 loader: centre, unit sphere
    pts /= np.sqrt((pts**2).sum(-1)).max(axis=1)[:, None, None]
    order = rng.permutation(n)
    return pts[order], lab[order], [ids[i] for i in order]


def make_synthetic_pointclouds(num_train: int = 2000, num_test: int = 500,
                               num_points: int = 300, num_classes: int = 10,
                               seed: int = 0) -> dict[str, Any]:
    """A procedurally generated, balanced point-cloud classification set (**not** ModelNet40).

    Args:
        num_train, num_test: numbers of clouds; classes get ``n // num_classes`` each, the first
            ``n % num_classes`` classes one more.
        num_points: points per cloud.
        num_classes: the first ``num_classes`` of :data:`SHAPES` (2 … ``len(SHAPES)`` = 14).
        seed: same seed, same arrays (bit-identical); train and test use disjoint streams.

    Returns:
        ``{"train": (points float32 [n, num_points, 3], labels int64 [n]), "test": (…),
        "shape_names": ["synthetic_sphere", …], "train_ids": […], "test_ids": […]}`` — the
        structure of :func:`ace.data.modelnet40.files.load_normal_resampled`; every cloud
        centred, with its farthest point on the unit sphere, in a random pose.
    """
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes={num_classes} must be in 2..{len(SHAPES)}")
    if num_points < 1 or num_train < 0 or num_test < 0:
        raise ValueError(f"need num_points >= 1 and num_train, num_test >= 0 (got "
                         f"{num_points}, {num_train}, {num_test})")
    names = list(SHAPES)[:num_classes]
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    out: dict[str, Any] = {"shape_names": [f"synthetic_{n}" for n in names]}
    for split, n, seq in (("train", num_train, train_seq), ("test", num_test, test_seq)):
        pts, labels, ids = _split(np.random.default_rng(seq), n, num_points, names)
        out[split] = (pts, labels)
        out[f"{split}_ids"] = ids
    return out
