"""Checks for notebooks 03-05: the coefficient ramp, c^x's leverage at each step, the k where two models tie in
JAQ, a search's cost, which ablations differ from naive, FID's small-n floor, and a paired bootstrap."""
from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from .common import _close, _unanswered, _verdict

RAMP_CASES = ((0.9, 4), (1.1, 4), (0.8, 2), (1.2, 8), (0.95, 1))


# ------------------------------------------------------------------------------------------------- notebook 03
def check_ramp(fn: Callable) -> bool:
    """`fn(start, num_steps)` must give the Q-Sched ramp c_i = start + (1 - start) i / (N - 1), c_0 = start at N = 1."""
    from ..sched import ramp

    if _unanswered(fn, "a function ramp(start, num_steps) -> one coefficient per step"):
        return False
    for start, n in RAMP_CASES:
        try:
            got = [float(v) for v in fn(start, n)]
        except Exception as err:  # a student's function may fail in any way; say how, do not crash the cell
            return _verdict(False, "", f"ramp({start}, {n}) raised {type(err).__name__}: {err}"
                            + ("; with one step there is no i / (N - 1): the ramp is its start" if n == 1 else ""))
        want = ramp(start, 1.0, n).tolist()
        if len(got) != n:
            return _verdict(False, "", f"ramp({start}, {n}) gave {len(got)} values; give one per step ({n})")
        if not all(_close(g, w, 0, 1e-6) for g, w in zip(got, want)):
            return _verdict(False, "", f"ramp({start}, {n}) = {[round(g, 4) for g in got]}: the first value must be "
                            "the start, the last exactly 1, evenly spaced in between")
    return _verdict(True, f"matches qsched_core.sched.ramp on {len(RAMP_CASES)} cases, including N = 1", "")


def cx_gains(scheduler, num_steps: int = 4) -> list[float]:
    """g_i = c_out(t_i) / alpha_t_i + c_skip(t_i) at each timestep of an N-step LCM schedule: raising c^x_i by
    delta moves the consistency output `denoised` by delta * g_i * x_t (d denoised / d c^x = g x_t)."""
    s = copy.deepcopy(scheduler)
    s.set_timesteps(num_steps)
    out = []
    for t in s.timesteps:
        alpha_t = s.alphas_cumprod[int(t)].sqrt()
        c_skip, c_out = s.get_scalings_for_boundary_condition_discrete(int(t))
        out.append(float(c_out / alpha_t + c_skip))
    return out


def check_cx_gains(answer, scheduler, num_steps: int = 4) -> bool:
    """`answer`: the list of g_i = c_out / alpha_t + c_skip, one per step of the `num_steps` schedule."""
    if _unanswered(answer, f"a list of {num_steps} numbers, one gain per step"):
        return False
    want = cx_gains(scheduler, num_steps)
    try:
        got = [float(v) for v in answer]
    except (TypeError, ValueError):
        return _verdict(False, "", f"give a list of {num_steps} numbers (got {type(answer).__name__})")
    if len(got) != num_steps:
        return _verdict(False, "", f"{len(got)} values for {num_steps} steps; give one per step")
    s = copy.deepcopy(scheduler)
    s.set_timesteps(num_steps)
    scalings = [s.get_scalings_for_boundary_condition_discrete(int(t)) for t in s.timesteps]  # (c_skip, c_out)
    abar = [float(s.alphas_cumprod[int(t)]) for t in s.timesteps]
    slips = {"alpha_t is the square root of alphas_cumprod[t]": [c_out / a + c_skip for (c_skip, c_out), a
                                                                  in zip(scalings, abar)],
             "denoised = c_out x0_hat + c_skip c^x x_t: the c_skip term moves with c^x too": [
                 c_out / a ** 0.5 for (_, c_out), a in zip(scalings, abar)]}
    for hint, wrong in slips.items():
        if all(_close(g, w, 0.01) for g, w in zip(got, wrong)) and not all(_close(w, v, 0.01)
                                                                            for w, v in zip(wrong, want)):
            return _verdict(False, "", hint)
    return _verdict(all(_close(g, w, 0.01) for g, w in zip(got, want)),
                    "gains " + ", ".join(f"{w:.2f}" for w in want) + ": a 1% change of c^x at the first step moves "
                    f"the consistency output by {want[0]:.2f}% of x_t, at the last by {want[-1]:.2f}%",
                    "not within 1%: alpha_t = sqrt(alphas_cumprod[t]); (c_skip, c_out) from "
                    "scheduler.get_scalings_for_boundary_condition_discrete(t); g = c_out / alpha_t + c_skip")


def jaq_tie_k(terms: dict, a: str = "FP", b: str = "W4A8") -> float:
    """The k at which JAQ = TC + k IQ of models a and b are equal (inf when their IQ terms are equal)."""
    d_iq = terms[a]["iq"] - terms[b]["iq"]
    return float("inf") if d_iq == 0 else (terms[b]["tc"] - terms[a]["tc"]) / d_iq


def check_jaq_tie_k(answer, terms: dict, a: str = "FP", b: str = "W4A8") -> bool:
    """`answer`: the k at which `a` and `b` tie in JAQ, from `terms` = {model: {"tc", "iq", ...}}."""
    if _unanswered(answer, "a number: the k where TC_a + k IQ_a = TC_b + k IQ_b"):
        return False
    want = jaq_tie_k(terms, a, b)
    if not np.isfinite(want):
        return _verdict(answer in (float("inf"), None), "equal IQ terms: no k changes the ranking",
                        "the two IQ terms are equal, so TC alone decides at every k: answer float('inf')")
    tc_first = a if terms[a]["tc"] > terms[b]["tc"] else b
    other = b if tc_first == a else a
    meaning = (f"k* = {want:.3g} < 0: for every k >= 0 the same model ranks first" if want < 0 else
               f"below k* = {want:.3g} {tc_first} ranks first (its TC is higher), above it {other} (its IQ is)")
    return _verdict(_close(answer, want, 1e-3, 1e-9), meaning,
                    "not the tie: solve TC_a + k IQ_a = TC_b + k IQ_b for k, i.e. k = (TC_b - TC_a) / (IQ_a - IQ_b)")


# ------------------------------------------------------------------------------------------------- notebook 04
def check_grid_nfe(answer, grid_points: int = 11, prompts: int = 5, steps: int = 4) -> bool:
    """`answer`: forward network evaluations of a grid_points x grid_points search on `prompts` images."""
    if _unanswered(answer, "a whole number of UNet evaluations"):
        return False
    want = grid_points ** 2 * prompts * steps
    slips = {grid_points * prompts * steps: "that is one row of the grid: it has P x P points",
             grid_points ** 2 * prompts: "each image takes one UNet call per sampling step"}
    hint = next((h for n, h in slips.items() if _close(answer, n, 0, 0.5)),
                "NFE = points x prompts x steps: every point renders every calibration image")
    return _verdict(_close(answer, want, 0, 0.5),
                    f"{grid_points}x{grid_points} points x {prompts} prompts x {steps} steps = {want} UNet calls", hint)


def significant_recipes(table, metric: str = "d_fid") -> list[str]:
    """Comparisons whose 95% interval of `metric` (recipe - naive) lies below 0: better than naive, for FID."""
    label = "comparison" if "comparison" in table else "recipe"
    return list(table.loc[table[f"{metric}_hi"] < 0, label])


def check_significant_recipes(answer, table, metric: str = "d_fid") -> bool:
    """`answer`: the list of comparisons (the `comparison` column) whose dFID interval excludes 0 below."""
    if _unanswered(answer, "a list of strings from the `comparison` column"):
        return False
    label = "comparison" if "comparison" in table else "recipe"
    want, got = set(significant_recipes(table, metric)), set(answer if not isinstance(answer, str) else [answer])
    rows = table.set_index(label)
    unknown = got - set(rows.index)
    if unknown:
        return _verdict(False, "", f"{sorted(unknown)[:2]} are not in the `{label}` column; copy its strings")
    reaching = sorted(c for c in got - want if rows.loc[c, metric] < 0)
    worse = sorted(c for c in got - want if rows.loc[c, f"{metric}_lo"] > 0)
    hint = (f"{reaching[0]!r}: its estimate is negative but its interval reaches 0; that is no shown difference"
            if reaching else f"{worse[0]!r} is *worse* than naive (its interval is above 0; lower FID is better)"
            if worse else f"{len(want - got)} comparison(s) missing: keep every row with {metric}_hi < 0")
    return _verdict(got == want, f"{len(want)} of {len(table)} recipes beat naive with an interval that excludes 0",
                    hint)


# ------------------------------------------------------------------------------------------------- notebook 05
def fid_floor_fit(floor: dict, n_ref: int, n: int) -> float:
    """The FID floor at n images from the least-squares fit floor(m) = b (1/m + 1/n_ref) to `floor` {m: FID}: both
    Gaussians are estimated from finitely many images, and each estimate adds a bias that shrinks like 1/size."""
    x = np.array([1 / m + 1 / n_ref for m in floor])
    b = float(np.dot(x, list(floor.values())) / np.dot(x, x))
    return b * (1 / n + 1 / n_ref)


def check_fid_floor_fit(answer, floor: dict, n_ref: int, n: int = 2000) -> bool:
    """`answer`: the floor at `n` images from the fit b (1/m + 1/n_ref) through the measured {m: FID of true renders}."""
    if _unanswered(answer, f"a number: the predicted FID floor at n = {n}"):
        return False
    want = fid_floor_fit(floor, n_ref, n)
    sizes = sorted(floor)
    no_ref = float(np.dot([floor[m] / m for m in sizes], [1 / m for m in sizes]) / sum(1 / m**2 for m in sizes)) / n
    if _close(answer, no_ref, 0.01) and not _close(no_ref, want, 0.01):
        return _verdict(False, "", "that fit leaves out the reference set: it is estimated from n_ref images, so its "
                        "bias b / n_ref stays in every floor (x = 1/m + 1/n_ref)")
    return _verdict(_close(answer, want, 0.01),
                    f"floor({n}) = {want:.2f}: more generated images shrink their half of the bias; the reference "
                    f"set's half, b / n_ref = {want - want * (1 / n) / (1 / n + 1 / n_ref):.2f}, stays",
                    "not within 1%: with x_m = 1/m + 1/n_ref, b = sum(x_m floor_m) / sum(x_m^2) (least squares "
                    "through 0), then floor(n) = b (1/n + 1/n_ref)")


def check_paired_bootstrap(fn: Callable, a, b, seed: int = 0) -> bool:
    """`fn(a, b)` must return (mean(a - b), lo, hi), a 95% percentile bootstrap interval that resamples *pairs*."""
    from ..stats import bootstrap_ci, paired_bootstrap_diff

    if _unanswered(fn, "a function paired_ci(a, b) -> (mean, lo, hi)"):
        return False
    a, b = (np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=float).ravel() for x in (a, b))
    try:
        mean, lo, hi = (float(v) for v in fn(a, b))
    except Exception as err:  # any mistake in the student's function is reported, not raised
        return _verdict(False, "", f"paired_ci(a, b) must return three numbers (mean, lo, hi); it gave {err!r}")
    want = paired_bootstrap_diff(a, b, n_boot=4000, seed=seed)
    width = want[2] - want[1]
    unpaired = bootstrap_ci(a, 4000, seed=seed)[2] - bootstrap_ci(a, 4000, seed=seed)[1] \
        + bootstrap_ci(b, 4000, seed=seed + 1)[2] - bootstrap_ci(b, 4000, seed=seed + 1)[1]
    if not _close(mean, want[0], 1e-6, 1e-9):
        return _verdict(False, "", "the first value must be the mean of the per-image differences a - b")
    if hi - lo > 1.5 * width and unpaired > 1.5 * width:
        return _verdict(False, "", "your interval is much wider than the paired one: resample the *pairs* (one set of "
                        "indices for a and b), i.e. bootstrap the differences a - b")
    ok = abs(lo - want[1]) <= 0.25 * width and abs(hi - want[2]) <= 0.25 * width
    return _verdict(ok, f"mean {want[0]:+.4f}, 95% interval [{want[1]:+.4f}, {want[2]:+.4f}] (width {width:.4f}; two "
                        f"unpaired intervals would span {unpaired:.4f})",
                    f"interval [{lo:+.4f}, {hi:+.4f}] is off: resample the differences with replacement (e.g. 1000 "
                    "times) and take the 2.5th and 97.5th percentiles of their means")
