"""The seed's findings (dllm_ptq.md §3.7-3.8) re-measured on the tiny model: a verdict and its numbers for each.

One function per finding; the seed's numbers (SEED, SEED_FP) and the paired comparisons (COMPARISONS) live here too.

What counts as evidence:

* A *cell* is one (model, task). A cell is read only when its FP accuracy is at least FLOOR = 20 %. Base arithmetic
  (FP 10 %, about 50 correct items of 500) is below: its relative drops have 95 % intervals some 40 points wide, so it
  is left out of every verdict (the report still prints it).
* A drop, or a difference between two quantized models, counts when its 95 % paired bootstrap interval over items
  excludes 0 (`evaluate.paired_drop`, `evaluate.paired_gap`; quantized per-item scores averaged over calibration
  seeds first). The intervals cover item sampling, not calibration seeds (the report shows that spread separately).
* The seed's buckets ([P], after Liu et al.): negligible < 1 %, moderate 1-4 %, significant > 4 %. "Collapse" means a
  drop above 50 % (the seed's SmoothQuant W4A4 loses 29-37 % on QA and >= 95 % on math and code).

Verdicts: holds / partly / does not hold / not resolved (the intervals include 0) / not testable here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .evaluate import paired_drop, paired_gap

TASKS = ("qa", "arith", "code")
MODELS = ("base", "instruct")
LABEL = {"qa": "QA", "arith": "math", "code": "code"}
NAME = {"rtn": "RTN", "gptq": "GPTQ", "awq": "AWQ", "smoothquant": "SmoothQuant", "quarot": "QuaRot",
        "duquant": "DuQuant"}
FLOOR, SIGNIFICANT, COLLAPSE = 20.0, 4.0, 50.0

# the seed's LLaDA-8B relative drops in % (QA, math, code; dllm_ptq.md §3.1-3.3, weight-only QA from the
# recomputed 6-task means of §3.6); negative = the quantized model scored higher
SEED = {
    ("base", "w4a16", "gptq"): (-0.2, 1.4, 5.9), ("base", "w4a16", "awq"): (2.2, 3.2, 7.3),
    ("base", "w3a16", "gptq"): (2.2, 15.7, 14.8), ("base", "w3a16", "awq"): (4.5, 10.7, 13.9),
    ("base", "w8a8", "smoothquant"): (2.5, 1.6, 6.5), ("base", "w8a8", "quarot"): (1.8, 0.4, 0.0),
    ("base", "w8a8", "duquant"): (1.9, -0.4, 0.0), ("base", "w4a4", "smoothquant"): (37.3, 97.4, 100.0),
    ("base", "w4a4", "quarot"): (6.6, 14.1, 19.3), ("base", "w4a4", "duquant"): (5.1, 13.0, 18.1),
    ("instruct", "w4a16", "gptq"): (-0.8, 0.6, 6.4), ("instruct", "w4a16", "awq"): (0.9, -0.5, 3.2),
    ("instruct", "w3a16", "gptq"): (1.8, 5.0, 14.7), ("instruct", "w3a16", "awq"): (3.5, 5.0, 12.4),
    ("instruct", "w8a8", "smoothquant"): (0.2, 0.4, 1.3), ("instruct", "w8a8", "quarot"): (0.3, -0.1, 4.3),
    ("instruct", "w8a8", "duquant"): (0.2, 0.5, 0.8), ("instruct", "w4a4", "smoothquant"): (29.0, 95.4, 99.2),
    ("instruct", "w4a4", "quarot"): (3.9, 6.2, 13.4), ("instruct", "w4a4", "duquant"): (2.5, 3.5, 14.9),
}
# the seed's FP category averages (QA: 6-task mean of §3.6 / 5 tasks as in Table 2; math; code)
SEED_FP = {"base": ("66.4 / 65.5", "45.5", "36.2"), "instruct": ("67.4 / 67.1", "56.0", "37.6")}

# (label, a, b): drop(a) - drop(b) on every readable cell; a and b are (setting, method)
COMPARISONS = (
    ("GPTQ - AWQ, W4A16", ("w4a16", "gptq"), ("w4a16", "awq")),
    ("GPTQ - AWQ, W3A16", ("w3a16", "gptq"), ("w3a16", "awq")),
    ("GPTQ W3 - W4", ("w3a16", "gptq"), ("w4a16", "gptq")),
    ("AWQ W3 - W4", ("w3a16", "awq"), ("w4a16", "awq")),
    ("GPTQ - RTN, W4A16", ("w4a16", "gptq"), ("w4a16", "rtn")),
    ("AWQ - RTN, W4A16", ("w4a16", "awq"), ("w4a16", "rtn")),
    ("SmoothQuant - QuaRot, W4A4", ("w4a4", "smoothquant"), ("w4a4", "quarot")),
    ("SmoothQuant - DuQuant, W4A4", ("w4a4", "smoothquant"), ("w4a4", "duquant")),
    ("DuQuant - QuaRot, W4A4", ("w4a4", "duquant"), ("w4a4", "quarot")),
    ("SmoothQuant - RTN, W4A4", ("w4a4", "smoothquant"), ("w4a4", "rtn")),
    ("DuQuant - QuaRot, W8A8", ("w8a8", "duquant"), ("w8a8", "quarot")),
)


def ci(x) -> str:
    return f"{x[0]:+.1f} [{x[1]:+.1f}, {x[2]:+.1f}]"


def sig(x) -> bool:
    """The interval excludes 0."""
    return x[1] > 0 or x[2] < 0


@dataclass
class Evidence:
    """Per-item scores of every row, {(model, setting, method): {task: (n_items, n_seeds)}}, FP at (m, 'fp', 'fp')."""
    agg: dict
    _memo: dict = field(default_factory=dict, repr=False)

    def _cached(self, key, fn):
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def fp(self, model: str, task: str) -> torch.Tensor:
        return self.agg[(model, "fp", "fp")][task][:, 0]

    def cells(self, tasks=TASKS) -> list[tuple[str, str]]:
        """Readable (model, task) cells: FP accuracy >= FLOOR."""
        return [(m, t) for m in MODELS for t in tasks
                if (m, "fp", "fp") in self.agg and 100 * float(self.fp(m, t).mean()) >= FLOOR]

    def acc(self, model: str, task: str) -> float:
        return 100 * float(self.fp(model, task).mean())

    def unreadable(self) -> list[tuple[str, str, float]]:
        return [(m, t, 100 * float(self.fp(m, t).mean())) for m in MODELS for t in TASKS
                if (m, "fp", "fp") in self.agg and (m, t) not in self.cells()]

    def drop(self, model, setting, method, task):
        key = (model, setting, method)
        if key not in self.agg:
            return None
        return self._cached(key + (task,), lambda: paired_drop(self.fp(model, task), self.agg[key][task]))

    def gap(self, model, a, b, task):
        ka, kb = (model,) + tuple(a), (model,) + tuple(b)
        if ka not in self.agg or kb not in self.agg:
            return None
        return self._cached((ka, kb, task), lambda: paired_gap(self.fp(model, task), self.agg[ka][task],
                                                               self.agg[kb][task]))

    def drops(self, setting, method, tasks=TASKS) -> dict:
        """{(model, task): drop} on the readable cells where the row exists."""
        out = {c: self.drop(c[0], setting, method, c[1]) for c in self.cells(tasks)}
        return {c: d for c, d in out.items() if d is not None}


def comparison_rows(ev: Evidence) -> list[tuple[str, dict]]:
    """COMPARISONS on every readable cell: [(label, {(model, task): gap})]."""
    rows = []
    for label, a, b in COMPARISONS:
        gaps = {c: ev.gap(c[0], a, b, c[1]) for c in ev.cells()}
        rows.append((label, {c: g for c, g in gaps.items() if g is not None}))
    return rows


def _cell(c) -> str:
    return f"{c[0].capitalize()} {LABEL[c[1]]}"


def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def _verdict(*conds) -> str:
    return "holds" if all(conds) else "partly" if any(conds) else "does not hold"


def weight_only(ev: Evidence):
    claim = ("1. Weight-only: W4 is nearly lossless (< 4 % on QA and math); W3 hurts math and code (seed, LLaDA-8B "
             "GPTQ W3: math 15.7 %, code 14.8 %)")
    w4 = {(c, m): d for m in ("gptq", "awq") for c, d in ev.drops("w4a16", m, ("qa", "arith")).items()}
    w3 = {(c, m): d for m in ("gptq", "awq") for c, d in ev.drops("w3a16", m, ("arith", "code")).items()}
    if not w4 or not w3:
        return claim, "not measured", "rows missing"
    (wc, wm), worst = max(w4.items(), key=lambda kv: kv[1][0])
    per = {t: _mean(d[0] for (c, _), d in w3.items() if c[1] == t) for t in ("arith", "code")}
    gaps = [ev.gap(c[0], ("w3a16", m), ("w4a16", m), c[1]) for (c, m) in w3]
    ev_txt = (f"largest W4 drop on QA / math: {worst[0]:.1f} % ({NAME[wm]}, {_cell(wc)}); W3 drops: " +
              ", ".join(f"{NAME[m]} {_cell(c)} {d[0]:.1f} %" for (c, m), d in w3.items()) +
              f"; W3 - W4 is significant in {sum(map(sig, gaps))} of {len(gaps)} (cell, method) pairs; mean W3 drop "
              f"math {per['arith']:.1f} %, code {per['code']:.1f} %")
    return claim, _verdict(worst[0] < SIGNIFICANT, per["arith"] > SIGNIFICANT, per["code"] > SIGNIFICANT), ev_txt


def weight_act(ev: Evidence):
    claim = ("2. W8A8 is near-lossless; W4A4 mostly loses > 4 %, and SmoothQuant collapses there (seed: W8A8 <= 2.5 % "
             "on QA and <= 1.6 % on math; SmoothQuant W4A4 29-37 % on QA, >= 95 % on math and code)")
    meths = ("smoothquant", "quarot", "duquant")
    w8 = {m: ev.drops("w8a8", m) for m in meths}
    w4 = {(c, m): d for m in meths for c, d in ev.drops("w4a4", m).items()}
    if not all(w8.values()) or not w4:
        return claim, "not measured", "rows missing"
    w8_max = {m: max(d.items(), key=lambda kv: kv[1][0]) for m, d in w8.items()}
    hard = [(c, m) for (c, m), d in w4.items() if d[0] > SIGNIFICANT]
    sq = max((d[0], c) for (c, m), d in w4.items() if m == "smoothquant")
    ev_txt = ("largest W8A8 drop: " + ", ".join(f"{NAME[m]} {ci(d)} ({_cell(c)})" for m, (c, d) in w8_max.items()) +
              f"; W4A4 drops > 4 % in {len(hard)} of {len(w4)} (method, cell) pairs: " +
              ", ".join(f"{NAME[m]} {_cell(c)} {w4[(c, m)][0]:.1f} %" for c, m in hard) +
              f"; largest SmoothQuant W4A4 drop {sq[0]:.1f} % ({_cell(sq[1])})")
    near = max(d[0] for _, d in w8_max.values()) < SIGNIFICANT
    return claim, _verdict(near, len(hard) > len(w4) / 2, sq[0] > COLLAPSE), ev_txt


def gptq_vs_awq(ev: Evidence):
    claim = ("3. GPTQ beats AWQ on QA at W4 and W3 on both models; AWQ is better on some math and code cells (seed: "
             "LLaDA-8B W3 math, Instruct W4 math, W3 code)")
    gaps = {(s, c): ev.gap(c[0], (s, "gptq"), (s, "awq"), c[1]) for s in ("w4a16", "w3a16") for c in ev.cells()}
    gaps = {k: g for k, g in gaps.items() if g is not None}
    qa = {k: g for k, g in gaps.items() if k[1][1] == "qa"}
    if not qa:
        return claim, "not measured", "rows missing"
    where = lambda keys: ", ".join(f"{_cell(c)} {s[:2].upper()}" for s, c in keys) or "none"  # noqa: E731
    ev_txt = ("drop(GPTQ) - drop(AWQ) on QA, points (< 0: GPTQ loses less): " +
              ", ".join(f"{_cell(c)} {s[:2].upper()} {ci(g)}" for (s, c), g in qa.items()) +
              "; significant anywhere: GPTQ less in " + where(k for k, g in gaps.items() if sig(g) and g[0] < 0) +
              ", AWQ less in " + where(k for k, g in gaps.items() if sig(g) and g[0] > 0))
    qa_sig = [g for g in qa.values() if sig(g)]
    if not qa_sig:
        verdict = "not resolved"
    else:
        verdict = "holds" if all(g[0] < 0 for g in qa_sig) else "does not hold"
    return claim, verdict, ev_txt


def rotations(ev: Evidence):
    claim = ("4. At W4A4 the rotation methods (QuaRot, DuQuant) beat SmoothQuant; DuQuant >= QuaRot in most cases "
             "(seed QA drops: DuQuant 5.1 / 2.5 %, QuaRot 6.6 / 3.9 %, Base / Instruct)")
    w4 = ev.drops("w4a4", "smoothquant")
    if not w4 or not ev.drops("w4a4", "quarot") or not ev.drops("w4a4", "duquant"):
        return claim, "not measured", "rows missing"
    rot = {c: [ev.gap(c[0], ("w4a4", "smoothquant"), ("w4a4", r), c[1]) for r in ("quarot", "duquant")] for c in w4}
    rot_win = [c for c, gs in rot.items() if all(sig(g) and g[0] > 0 for g in gs)]
    sq_win = [c for c, gs in rot.items() if all(sig(g) and g[0] < 0 for g in gs)]
    dq = {c: ev.gap(c[0], ("w4a4", "duquant"), ("w4a4", "quarot"), c[1]) for c in w4}
    dq_better = [c for c, g in dq.items() if sig(g) and g[0] < 0]
    dq_worse = [c for c, g in dq.items() if sig(g) and g[0] > 0]
    names = lambda cs: ", ".join(map(_cell, cs)) or "none"  # noqa: E731
    ev_txt = ("W4A4 drops SmoothQuant / QuaRot / DuQuant: " +
              "; ".join(f"{_cell(c)} {w4[c][0]:.1f} / {ev.drop(c[0], 'w4a4', 'quarot', c[1])[0]:.1f} / "
                        f"{ev.drop(c[0], 'w4a4', 'duquant', c[1])[0]:.1f} %" for c in w4) +
              f". Both rotations significantly better than SmoothQuant in: {names(rot_win)}; SmoothQuant better than "
              f"both in: {names(sq_win)}. DuQuant significantly better than QuaRot in: {names(dq_better)}; worse in: "
              f"{names(dq_worse)}")
    return claim, _verdict(len(rot_win) > len(sq_win), not dq_worse), ev_txt


def math_code_most(ev: Evidence):
    claim = ("5. Math and code degrade most (seed: W4 code drops > 5 %, W4A4 rotations > 10 % on code; error "
             "accumulation over many denoising steps)")
    keys = [k for k in ev.agg if k[1] != "fp"]
    mean = {c: _mean(ev.drop(c[0], k[1], k[2], c[1])[0] for k in keys if k[0] == c[0]) for c in ev.cells()}
    if not keys:
        return claim, "not measured", "rows missing"
    worst_code = max(ev.drop(c[0], k[1], k[2], c[1])[0] for c in ev.cells(("code",)) for k in keys if k[0] == c[0])
    ev_txt = ("mean drop over all quantized rows: " + ", ".join(f"{_cell(c)} {v:.1f} %" for c, v in mean.items()) +
              f"; the largest code drop of any row is {worst_code:.1f} %")
    math_most = all(mean[(m, "arith")] > max(v for c, v in mean.items() if c[0] == m and c[1] != "arith")
                    for m, t in mean if t == "arith")
    code_more = all(mean[(m, "code")] > mean[(m, "qa")] for m, t in mean if t == "code" and (m, "qa") in mean)
    return claim, _verdict(math_most, code_more), ev_txt


def instruct_vs_base(ev: Evidence):
    claim = "6. Instruct is more robust than Base (seed: W3 math drops ~5 % for Instruct vs 10-16 % for Base)"
    shared = [k[1:] for k in ev.agg if k[0] == "base" and k[1] != "fp" and ("instruct",) + k[1:] in ev.agg]
    tasks = [t for t in TASKS if ("base", t) in ev.cells() and ("instruct", t) in ev.cells()]
    if not shared or not tasks:
        return claim, "not measured", "rows missing"
    mean = {(m, t): _mean(ev.drop(m, *k, t)[0] for k in shared) for m in MODELS for t in tasks}
    fewer = {t: sum(ev.drop("instruct", *k, t)[0] < ev.drop("base", *k, t)[0] for k in shared) for t in tasks}
    still = {t: sum(abs(ev.drop("base", *k, t)[0]) < 1 for k in shared) for t in tasks}
    skipped = [t for t in TASKS if t not in tasks]
    ev_txt = (f"mean drop over the {len(shared)} (setting, method) rows of both models: " +
              "; ".join(f"{LABEL[t]} Instruct {mean[('instruct', t)]:.1f} % vs Base {mean[('base', t)]:.1f} % "
                        f"(Instruct lower in {fewer[t]} of {len(shared)}; Base within 1 % of FP in {still[t]})"
                        for t in tasks) +
              ("; not comparable on " + ", ".join(LABEL[t] for t in skipped) + " (Base below the floor)"
               if skipped else ""))
    return claim, _verdict(*(mean[("instruct", t)] < mean[("base", t)] for t in tasks)), ev_txt


def dream(_ev: Evidence):
    return ("7. Dream-7B behaves similarly but is more fragile at 3 bits (~10 % loss even on QA)", "not testable here",
            "no Dream-like model (shift objective, GQA) is trained here")


def outlier_finding(o: dict):
    """§3.7 from results/dllm_outliers.json: where the largest inputs sit and whether they are token-wise."""
    claim = ("O. The largest activation outliers sit at the down-projection (ff_out) input, as massive outliers on a "
             "limited set of tokens (seed: LLaDA-8B, Fig. 1-2)")
    where, down = [], []
    for model, rows in o["stats"].items():
        for layer in sorted({r["layer"] for r in rows}):
            block = [r for r in rows if r["layer"] == layer]
            where.append(max(block, key=lambda r: r["max_abs"])["input"].startswith("SwiGLU"))
        down += [r for r in rows if r["input"].startswith("SwiGLU")]
    ch = (min(r["channel_ratio"] for r in down), max(r["channel_ratio"] for r in down))
    tok = (min(r["token_ratio"] for r in down), max(r["token_ratio"] for r in down))
    ev_txt = (f"the down-projection input holds the block's largest activation in {sum(where)} of {len(where)} "
              f"blocks (Base and Instruct); there, channel max/median {ch[0]:.0f}-{ch[1]:.0f} but token max/median "
              f"{tok[0]:.1f}-{tok[1]:.1f}: a few channels are large on every token (normal-type outliers), not a few "
              f"tokens")
    return claim, _verdict(all(where), tok[1] > ch[1]), ev_txt


def other_differences(ev: Evidence) -> list[str]:
    """The significant cells of the COMPARISONS no finding covers (against RTN; DuQuant vs QuaRot at W8A8)."""
    out = []
    for label, gaps in comparison_rows(ev):
        if "RTN" in label or "W8A8" in label:
            hits = [f"{_cell(c)} {ci(g)}" for c, g in gaps.items() if sig(g)]
            out += [f"- {label}: " + "; ".join(hits)] if hits else []
    return out


FINDINGS = (weight_only, weight_act, gptq_vs_awq, rotations, math_code_most, instruct_vs_base, dream)


def findings(ev: Evidence, outliers: dict | None = None) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) for the seed's findings 1-7 and, given dllm_outliers.json, its outlier finding."""
    return [f(ev) for f in FINDINGS] + ([outlier_finding(outliers)] if outliers else [])
