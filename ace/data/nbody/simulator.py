"""Charged 5-body simulator, bit-exact with the reference generator of the EGNN/SEGNN
``nbody_small`` data on the same kind of CPU.

Written from ``shared/reference/nbody_simulator.md`` (cited below as §N):

* §1 constants, §2 one legacy ``np.random.RandomState`` stream (train, then valid, then test),
* §3 per-simulation draw order (charges, positions, velocities, initial reflection, two unused
  noise draws), §4 force (BLAS product for A·Aᵀ, diagonal of w zeroed after the division,
  component clip ±100), §5 leapfrog with saves at ``i % 100 == 0``,
* §8 the vectorised recipe: draw every simulation's initial state in a cheap Python loop (noise
  draws included), then integrate a chunk of simulations together in float64.

Outputs use the reference layout (§7): ``loc``/``vel`` [S, 49, 3, 5] (sim, frame, xyz, particle)
and ``charges`` [S, 5, 1], all float64. :func:`simulate_loop` is the one-simulation-at-a-time
version (the reference generator's operations; same numbers, ~70x slower on 2 cores), kept for
tests and the speed benchmark.

What "bit-exact" means: the output has identical bits to the reference algorithm run on the same
kind of CPU, i.e. with the same NumPy SIMD dispatch. NumPy picks the ``np.power`` kernel by CPU
(e.g. AVX-512 vs AVX2), and the kernels differ in the last bit now and then, so the reference
generator itself gives different bits on different CPU kinds. The systems are chaotic (Coulomb
force without softening), so such a difference first shows at the rounding level and then grows
by an amount that depends on the simulation: on the 10 simulations of the §9 fixture it stays
below 1e-8 (AVX-512 vs AVX2: 4.6e-10 in loc, 6.4e-9 in vel), but over the first 2,000 seed-43
training simulations the median difference at frame 48 is ~1e-14 while ~3-4 % of them (those
with close encounters) diverge macroscopically, up to O(1) in position. Statistics over the data
set are unaffected (the constant-velocity MSE of those 2,000 differs by < 1 %). Consequently a
data set regenerated on another CPU kind does not have the same SHA-256 as one made here; the
manifest (:func:`generate_dataset`) records the hashes of the files as written on the machine
that made them, and verifies those files, wherever they are copied.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ace.data.download import sha256_file

__all__ = [
    "N_PARTICLES", "DIM", "BOX_SIZE", "LOC_STD", "VEL_NORM", "INTERACTION_STRENGTH", "DT",
    "MAX_F", "NOISE_VAR", "LENGTH", "SAMPLE_FREQ", "T_SAVE", "CHARGE_TYPES", "CHARGE_PROB",
    "SPLITS", "CHUNK_SIZE", "FORMAT_VERSION", "ARRAYS", "generator_params", "dataset_params",
    "dataset_name", "simulate_split", "simulate_loop", "generate", "generate_dataset",
    "sha256_file",
]

# §1 constants
N_PARTICLES = 5
DIM = 3
BOX_SIZE = 5.0
LOC_STD = 1.0
VEL_NORM = 0.5
INTERACTION_STRENGTH = 1.0
DT = 0.001
MAX_F = 0.1 / DT  # 100.0
NOISE_VAR = 0.0
LENGTH = 5000
SAMPLE_FREQ = 100
T_SAVE = LENGTH // SAMPLE_FREQ - 1  # 49
CHARGE_TYPES = (-1.0, 0.0, 1.0)
CHARGE_PROB = (0.5, 0.0, 0.5)

SPLITS = ("train", "valid", "test")
ARRAYS = ("loc", "vel", "charges")
CHUNK_SIZE = 2000  # §8.5
FORMAT_VERSION = 1  # of the on-disk dataset (manifest.json + {loc,vel,charges}_{split}.npy)


def generator_params() -> dict:
    """The §1 constants, as recorded in a dataset manifest."""
    return {
        "simulation": "charged",
        "n_particles": N_PARTICLES,
        "dim": DIM,
        "box_size": BOX_SIZE,
        "loc_std": LOC_STD,
        "vel_norm": VEL_NORM,
        "interaction_strength": INTERACTION_STRENGTH,
        "dt": DT,
        "max_F": MAX_F,
        "noise_var": NOISE_VAR,
        "length": LENGTH,
        "sample_freq": SAMPLE_FREQ,
        "t_save": T_SAVE,
        "charge_types": list(CHARGE_TYPES),
        "charge_prob": list(CHARGE_PROB),
        "rng": "numpy.random.RandomState (legacy MT19937)",
    }


# ---------------------------------------------------------------------------------------------
# §3: one simulation's random draws
# ---------------------------------------------------------------------------------------------
def _reflect_initial(x: np.ndarray, v: np.ndarray) -> None:
    """§3.4: reflect the initial state at ±box_size, in place (practically never fires)."""
    assert np.all(np.abs(x) < 3 * BOX_SIZE), "initial position beyond 3 * box_size"
    over = x > BOX_SIZE
    x[over] = 2 * BOX_SIZE - x[over]
    v[over] = -np.abs(v[over])
    under = x < -BOX_SIZE
    x[under] = -2 * BOX_SIZE - x[under]
    v[under] = np.abs(v[under])


def _draw_initial(rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """§3 steps 1-4: charges [5, 1], positions [3, 5], velocities [3, 5], in the exact RNG order."""
    q = rng.choice(np.array(CHARGE_TYPES), size=(N_PARTICLES, 1), p=np.array(CHARGE_PROB))
    x = rng.randn(DIM, N_PARTICLES) * LOC_STD
    w = rng.randn(DIM, N_PARTICLES)
    norm = np.sqrt((w**2).sum(axis=0)).reshape(1, -1)
    v = w * VEL_NORM / norm  # (w * 0.5) / |w|, in this order (§3.3)
    _reflect_initial(x, v)
    return q, x, v


def _draw_unused_noise(rng: np.random.RandomState) -> None:
    """§3.6: the two noise arrays (scaled by noise_var = 0) must still be drawn."""
    rng.randn(T_SAVE, DIM, N_PARTICLES)
    rng.randn(T_SAVE, DIM, N_PARTICLES)


# ---------------------------------------------------------------------------------------------
# §4-5 batched: forces and integration for S systems at once (§8.4)
# ---------------------------------------------------------------------------------------------
class _BatchedForce:
    """F(x) for x [S, 3, 5] (§4, batched as in §8.4), with the same rounding as the reference.

    Two rearrangements that leave every bit unchanged (checked against
    :func:`simulate_loop`, and against the §9 fixture on an AVX2-dispatch CPU) and halve the cost:

    * r² is exactly symmetric (A·Aᵀ comes from BLAS ``syrk`` and a + b = b + a), so r^{3/2} and
      w = kE / r³ are computed for the 10 pairs i < j only and mirrored. The diagonal of w is
      never computed and stays 0 — the value the reference writes over its NaN/inf (§4.4).
    * NumPy's ``sum`` over a trailing axis of length 5 adds sequentially, ((t₀ + t₁) + t₂) + …,
      so F_i = Σ_j w_ij (x_i − x_j) is accumulated over j = 0…4 in that order (the j = i term
      is an exact 0, as in the reference).

    Only the BLAS product and ``np.power`` are left to the library, as in the reference. Both
    may round differently on another BLAS or CPU kind; ``tests/test_nbody_data.py`` checks bit
    equality with :func:`simulate_loop` on the machine it runs on, and closeness to the §9
    fixture (made on an AVX2-dispatch CPU) within a cross-CPU tolerance.
    """

    def __init__(self, edges: np.ndarray):
        s, n = edges.shape[0], N_PARTICLES
        iu, ju = np.triu_indices(n, 1)
        self.iu, self.ju = iu, ju
        self.upper, self.lower = iu * n + ju, ju * n + iu  # flat indices into [n, n]
        self.k_edges = (INTERACTION_STRENGTH * edges).reshape(s, n * n)[:, self.upper]  # [S, 10]
        self.w = np.zeros((s, n, n))
        self.w_flat = self.w.reshape(s, n * n)
        self.w_pairs = np.empty((s, len(iu)))
        self.force = np.empty((s, DIM, n))
        self.term = np.empty((s, DIM, n))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s = x.shape[0]
        a = x.transpose(0, 2, 1)  # A = xᵀ [S, n, 3], a view of x
        # A @ x: both operands view one buffer, so NumPy calls BLAS syrk, as the reference's dot.
        aat = np.matmul(a, x).reshape(s, -1)
        sq = x[:, 0] * x[:, 0]  # Σ_d A_id², summed in the order d = 0, 1, 2 like `sum`
        sq += x[:, 1] * x[:, 1]
        sq += x[:, 2] * x[:, 2]
        r2 = sq[:, self.iu] + sq[:, self.ju]
        r2 -= 2 * aat[:, self.upper]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            np.divide(self.k_edges, np.power(r2, 1.5), out=self.w_pairs)
        self.w_flat[:, self.upper] = self.w_pairs
        self.w_flat[:, self.lower] = self.w_pairs
        w, f, t = self.w, self.force, self.term
        np.subtract(x, x[:, :, 0:1], out=t)
        np.multiply(t, w[:, None, :, 0], out=f)
        for j in range(1, N_PARTICLES):
            np.subtract(x, x[:, :, j : j + 1], out=t)
            t *= w[:, None, :, j]
            f += t
        np.clip(f, -MAX_F, MAX_F, out=f)
        return f


def _integrate_batch(
    x0: np.ndarray, v0: np.ndarray, edges: np.ndarray, check_weights: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """§5 for S systems: x0, v0 [S, 3, 5] (float64) -> loc, vel [S, 49, 3, 5]."""
    s = x0.shape[0]
    x, v = x0.copy(), v0.copy()
    loc = np.empty((s, T_SAVE, DIM, N_PARTICLES))
    vel = np.empty((s, T_SAVE, DIM, N_PARTICLES))
    force = _BatchedForce(edges)
    f = force(x)
    if check_weights:  # the reference asserts this at the initial state (§4.4)
        assert np.abs(force.w_pairs).min() > 1e-10, "interaction weight below 1e-10"
    v += DT * f  # initial (full-dt) kick
    counter = 0
    for i in range(1, LENGTH):
        x += DT * v
        if i % SAMPLE_FREQ == 0:
            loc[:, counter] = x
            vel[:, counter] = v
            counter += 1
        v += DT * force(x)
    assert counter == T_SAVE
    return loc, vel


def simulate_split(
    rng: np.random.RandomState,
    num_sims: int,
    chunk_size: int = CHUNK_SIZE,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Simulate ``num_sims`` consecutive systems from ``rng`` (§8), advancing it exactly as the
    reference does. Returns ``loc``, ``vel`` [S, 49, 3, 5] and ``charges`` [S, 5, 1] (float64).

    ``on_chunk(n)`` is called after each chunk of ``n`` simulations has been integrated.
    """
    loc = np.empty((num_sims, T_SAVE, DIM, N_PARTICLES))
    vel = np.empty((num_sims, T_SAVE, DIM, N_PARTICLES))
    charges = np.empty((num_sims, N_PARTICLES, 1))
    for start in range(0, num_sims, chunk_size):
        stop = min(start + chunk_size, num_sims)
        x0 = np.empty((stop - start, DIM, N_PARTICLES))
        v0 = np.empty_like(x0)
        for k in range(stop - start):  # §8.2: every draw in per-simulation order
            charges[start + k], x0[k], v0[k] = _draw_initial(rng)
            _draw_unused_noise(rng)
        q = charges[start:stop]
        edges = np.matmul(q, q.transpose(0, 2, 1))  # E = q qᵀ, exact (entries ±1)
        loc[start:stop], vel[start:stop] = _integrate_batch(x0, v0, edges)
        if on_chunk is not None:
            on_chunk(stop - start)
    return {"loc": loc, "vel": vel, "charges": charges}


# ---------------------------------------------------------------------------------------------
# Reference-style loop, one simulation at a time (benchmark and cross-check only)
# ---------------------------------------------------------------------------------------------
def _loop_force(x: np.ndarray, k_edges: np.ndarray) -> np.ndarray:
    """§4 for one system, x [3, 5] -> F [3, 5]."""
    a = x.T
    sq = (a**2).sum(axis=1)
    r2 = sq.reshape(-1, 1) + sq.reshape(1, -1) - 2 * a.dot(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = k_edges / np.power(r2, 1.5)
    np.fill_diagonal(w, 0.0)
    diff = np.stack([np.subtract.outer(x[d], x[d]) for d in range(DIM)])  # [3, n, n]
    f = (w[None] * diff).sum(axis=-1)
    f[f > MAX_F] = MAX_F
    f[f < -MAX_F] = -MAX_F
    return f


def simulate_loop(rng: np.random.RandomState, num_sims: int) -> dict[str, np.ndarray]:
    """Same as :func:`simulate_split` but one simulation at a time, with the noise drawn after
    the integration as in the reference (§3); the same bits (on the same machine), much slower.

    The force (:func:`_loop_force`) performs the reference generator's NumPy operations in its
    order (``ChargedParticlesSim.sample_trajectory`` in Steerable-E3-GNN's ``synthetic_sim.py``),
    so this is the reference algorithm that the vectorised version is tested against."""
    loc = np.empty((num_sims, T_SAVE, DIM, N_PARTICLES))
    vel = np.empty((num_sims, T_SAVE, DIM, N_PARTICLES))
    charges = np.empty((num_sims, N_PARTICLES, 1))
    for s in range(num_sims):
        q, x, v = _draw_initial(rng)
        k_edges = INTERACTION_STRENGTH * q.dot(q.T)
        v += DT * _loop_force(x, k_edges)
        counter = 0
        for i in range(1, LENGTH):
            x += DT * v
            if i % SAMPLE_FREQ == 0:
                loc[s, counter], vel[s, counter] = x, v
                counter += 1
            v += DT * _loop_force(x, k_edges)
        _draw_unused_noise(rng)
        charges[s] = q
    return {"loc": loc, "vel": vel, "charges": charges}


# ---------------------------------------------------------------------------------------------
# §2: all three splits from one stream
# ---------------------------------------------------------------------------------------------
def generate(
    num_train: int = 10000,
    num_valid: int = 2000,
    num_test: int = 2000,
    seed: int = 43,
    progress: bool = True,
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, dict[str, np.ndarray]]:
    """Train, then valid, then test from ONE ``RandomState(seed)`` stream (§2)."""
    sizes = dict(zip(SPLITS, (num_train, num_valid, num_test)))
    rng = np.random.RandomState(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(sizes.values()), desc="N-body simulations", unit="sim")
    try:
        out = {}
        for split, n in sizes.items():
            if bar is not None:
                bar.set_postfix_str(split)
            out[split] = simulate_split(rng, n, chunk_size, bar.update if bar else None)
        return out
    finally:
        if bar is not None:
            bar.close()


# ---------------------------------------------------------------------------------------------
# On-disk dataset: {loc,vel,charges}_{split}.npy in the reference layout (§7) + manifest.json
# ---------------------------------------------------------------------------------------------
def dataset_params(num_train: int, num_valid: int, num_test: int, seed: int) -> dict:
    """Everything that determines the data; stored in, and checked against, ``manifest.json``."""
    return {
        "format_version": FORMAT_VERSION,
        **generator_params(),
        "seed": int(seed),
        "num_train": int(num_train),
        "num_valid": int(num_valid),
        "num_test": int(num_test),
        "layout": {"loc": "(sim, frame, xyz, particle)", "vel": "(sim, frame, xyz, particle)",
                   "charges": "(sim, particle, 1)"},
    }


def dataset_name(num_train: int, num_valid: int, num_test: int, seed: int) -> str:
    """Directory name encoding the generator settings, e.g. ``charged5_seed43_10000_2000_2000``."""
    return f"charged{N_PARTICLES}_seed{seed}_{num_train}_{num_valid}_{num_test}"


def _remove_stale_tmp(root: Path, name: str) -> None:
    """Delete temporary directories left by killed generator processes on this machine."""
    for tmp in root.glob(f".{name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)  # raises if no such process
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


def generate_dataset(
    root: str | Path,
    num_train: int = 10000,
    num_valid: int = 2000,
    num_test: int = 2000,
    seed: int = 43,
    progress: bool = True,
    overwrite: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> Path:
    """Generate the data set into ``root / dataset_name(...)`` and return that directory.

    Writes ``{loc,vel,charges}_{split}.npy`` (float64, reference layout §7) and ``manifest.json``
    (:func:`dataset_params`, the SHA-256 and shape of every file, timing, NumPy version). Files go
    to a temporary sibling directory first, which is renamed into place only when complete, so an
    interrupted run never leaves a partial data set.

    The SHA-256 values are those of the files just written: they verify these files (here or
    copied elsewhere), not a regeneration on another kind of CPU, which can differ in the low
    bits and, for a few percent of the simulations, macroscopically (see the module docstring).
    """
    root = Path(root)
    name = dataset_name(num_train, num_valid, num_test, seed)
    final = root / name
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists (pass overwrite=True / --force to replace it)")
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(root, name)
    tmp = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        started = time.perf_counter()
        data = generate(num_train, num_valid, num_test, seed, progress, chunk_size)
        seconds = time.perf_counter() - started
        files = {}
        for split in SPLITS:
            for key in ARRAYS:
                fname = f"{key}_{split}.npy"
                arr = data[split][key]
                np.save(tmp / fname, arr)
                files[fname] = {"sha256": sha256_file(tmp / fname), "shape": list(arr.shape),
                                "dtype": str(arr.dtype)}
        manifest = {
            "params": dataset_params(num_train, num_valid, num_test, seed),
            "files": files,
            "generation_seconds": round(seconds, 2),
            "numpy_version": np.__version__,
            "created_unix": int(time.time()),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():  # overwrite=True: move the old copy aside, then swap
            old = root / f".{name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "manifest.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
