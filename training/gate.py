"""The evaluation gate: is the two-head checkpoint as good as its single-task baselines?

All three runs are evaluated on the same test split. Per head one *gate metric* is compared:
``lulc_mIoU`` for land cover and ``buildings_IoU_<positive class>`` for buildings (the
background class would inflate a buildings mIoU). With ``d = multi - single`` in percentage
points (pp):

- **Strong**: both heads within 1 pp of their baseline (``d >= -1`` for both; gains are fine).
- **Acceptable**: one head gives up at most 3 pp (``-3 <= d < -1``) while the other gains at
  least as much (``d_other >= -d``).
- **Negative**: both heads drop by 3 pp or more (``d <= -3`` for both); publish the negative result.

Anything else gets no verdict (``verdict`` is None): the gate then says which rule failed for
which head (e.g. one head drops 2 pp and the other gains less), and the two-head checkpoint
should not replace the baselines. There is no fourth name.

The same rules judge a *distilled* student against its teachers (the published adapters):
:func:`compare` takes the student's metrics as ``multi`` and each teacher's as ``singles``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from terramind_nyc.jsonsafe import json_safe

from .layout import write_json_atomic

__all__ = ["GateResult", "HeadComparison", "Verdict", "compare", "decide", "gate_metric_key", "write_report"]

Verdict = Literal["Strong", "Acceptable", "Negative"]

STRONG_PP = 1.0
ACCEPTABLE_PP = 3.0
NEGATIVE_PP = 3.0
_EPS = 1e-9

RULES = {
    "Strong": f"both heads within {STRONG_PP:g} pp of their single-task baselines",
    "Acceptable": f"one head gives up at most {ACCEPTABLE_PP:g} pp while the other gains at least as much",
    "Negative": f"both heads drop by {NEGATIVE_PP:g} pp or more",
}


def gate_metric_key(head: str, class_names: Sequence[str]) -> str:
    """The metric compared for ``head``: mIoU for multi-class heads, the positive class's IoU for binary ones."""
    if len(class_names) == 2:
        return f"{head}_IoU_{class_names[1]}"
    return f"{head}_mIoU"


@dataclass(frozen=True)
class HeadComparison:
    """One head: the multi-head and single-task figures on the same test split."""

    head: str
    """Head name."""
    metric: str
    """Gate metric key (e.g. ``lulc_mIoU``, ``buildings_IoU_building``)."""
    multi: float
    """Gate metric of the two-head model, 0..1."""
    single: float
    """Gate metric of the single-task baseline, 0..1."""
    delta_pp: float
    """``100 * (multi - single)``, percentage points."""
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    """Class name -> ``{"multi", "single", "delta_pp"}`` IoUs (0..1, pp)."""
    multi_metrics: dict[str, float] = field(default_factory=dict)
    """Every metric of this head for the two-head model."""
    single_metrics: dict[str, float] = field(default_factory=dict)
    """Every metric of this head for the baseline."""


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and the figures behind it."""

    verdict: Verdict | None
    """Strong / Acceptable / Negative, or None when no rule holds (``rule`` then says why each failed)."""
    rule: str
    """The rule that decided the verdict, or why each rule failed, with the deltas filled in."""
    heads: dict[str, HeadComparison]
    """Per head comparison."""
    runs: dict[str, Any] = field(default_factory=dict)
    """Provenance of the three runs (paths, checkpoints) and of the test split."""

    @property
    def outcome(self) -> str:
        """The verdict's name, or the rule that failed (``"no verdict: ..."``) when there is none."""
        return self.verdict if self.verdict is not None else self.rule

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "outcome": self.outcome, "rule": self.rule, "rules": dict(RULES),
                "heads": {k: asdict(v) for k, v in self.heads.items()}, "runs": json_safe(self.runs)}


def decide(deltas_pp: Mapping[str, float]) -> tuple[Verdict | None, str]:
    """Verdict from the per-head gate-metric deltas (pp) of exactly two heads.

    Returns ``(verdict, rule)``; with no verdict, ``(None, "no verdict: <why each rule failed>")``.
    """
    if len(deltas_pp) != 2:
        raise ValueError(f"the gate compares exactly two heads, got {sorted(deltas_pp)}")
    (h1, d1), (h2, d2) = sorted(deltas_pp.items())
    if any(not math.isfinite(d) for d in (d1, d2)):
        raise ValueError(f"gate deltas must be finite, got {dict(deltas_pp)}; is a class missing from the test split?")
    txt = f"{h1} {d1:+.2f} pp, {h2} {d2:+.2f} pp"
    if d1 >= -STRONG_PP - _EPS and d2 >= -STRONG_PP - _EPS:
        return "Strong", f"{txt}: {RULES['Strong']}"
    for (ha, da), (hb, db) in (((h1, d1), (h2, d2)), ((h2, d2), (h1, d1))):
        if -ACCEPTABLE_PP - _EPS <= da < -STRONG_PP and db >= -da - _EPS:
            return "Acceptable", f"{txt}: {ha} gives up {-da:.2f} pp (<= {ACCEPTABLE_PP:g}) and {hb} gains {db:.2f} pp"
    if d1 <= -NEGATIVE_PP + _EPS and d2 <= -NEGATIVE_PP + _EPS:
        return "Negative", f"{txt}: {RULES['Negative']}"
    low = min(((h1, d1), (h2, d2)), key=lambda hd: hd[1])
    high = (h2, d2) if low[0] == h1 else (h1, d1)
    why = [f"Strong fails: {low[0]} is {-low[1]:.2f} pp below its baseline (more than {STRONG_PP:g})"]
    if low[1] < -ACCEPTABLE_PP:
        why.append(f"Acceptable fails: {low[0]} gives up {-low[1]:.2f} pp (more than {ACCEPTABLE_PP:g})")
    else:
        why.append(f"Acceptable fails: {high[0]} {'gains only' if high[1] >= 0 else 'changes by'} {high[1]:+.2f} pp, "
                   f"less than the {-low[1]:.2f} pp {low[0]} gives up")
    why.append(f"Negative fails: {high[0]} is {high[1]:+.2f} pp, not down by {NEGATIVE_PP:g} pp or more")
    return None, f"no verdict: {txt}; " + "; ".join(why)


def compare(multi: Mapping[str, float], singles: Mapping[str, Mapping[str, float]],
            classes: Mapping[str, Sequence[str]], runs: Mapping[str, Any] | None = None) -> GateResult:
    """Gate result from the two-head model's test metrics and each baseline's (``singles[head]``)."""
    heads: dict[str, HeadComparison] = {}
    for head, names in classes.items():
        key = gate_metric_key(head, names)
        single = singles[head]
        per_class = {}
        for c in names:
            k = f"{head}_IoU_{c}"
            m, s = float(multi.get(k, float("nan"))), float(single.get(k, float("nan")))
            per_class[c] = {"multi": m, "single": s, "delta_pp": 100.0 * (m - s)}
        prefix = f"{head}_"
        heads[head] = HeadComparison(
            head=head, metric=key, multi=float(multi[key]), single=float(single[key]),
            delta_pp=100.0 * (float(multi[key]) - float(single[key])), per_class=per_class,
            multi_metrics={k: float(v) for k, v in multi.items() if k.startswith(prefix)},
            single_metrics={k: float(v) for k, v in single.items() if k.startswith(prefix)},
        )
    verdict, rule = decide({h: c.delta_pp for h, c in heads.items()})
    return GateResult(verdict=verdict, rule=rule, heads=heads, runs=dict(runs or {}))


def _pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{100 * v:.2f}"


def _pp(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:+.2f}"


def to_markdown(result: GateResult) -> str:
    """The report as markdown."""
    head = f"**{result.verdict}**" if result.verdict is not None else "no verdict"
    lines = [f"# Eval gate: {head}", "", f"Rule applied: {result.rule}.", ""]
    lines += ["| head | gate metric | two-head (%) | single-task (%) | difference (pp) |", "|---|---|---|---|---|"]
    for h, c in result.heads.items():
        lines.append(f"| {h} | {c.metric} | {_pct(c.multi)} | {_pct(c.single)} | {_pp(c.delta_pp)} |")
    for h, c in result.heads.items():
        lines += ["", f"## {h}: per-class IoU", "", "| class | two-head (%) | single-task (%) | difference (pp) |",
                  "|---|---|---|---|"]
        for name, v in c.per_class.items():
            lines.append(f"| {name} | {_pct(v['multi'])} | {_pct(v['single'])} | {_pp(v['delta_pp'])} |")
        lines.append("")
        lines.append("| metric | two-head | single-task |")
        lines.append("|---|---|---|")
        for k in (f"{h}_mIoU", f"{h}_F1", f"{h}_pixel_acc"):
            lines.append(f"| {k} | {_pct(c.multi_metrics.get(k, float('nan')))} | "
                         f"{_pct(c.single_metrics.get(k, float('nan')))} |")
    agreement = dict(result.runs.get("agreement_with_teacher") or {})
    if agreement:
        lines += ["", "## Agreement with the teachers", "", "| head | argmax agreement (%) |", "|---|---|"]
        lines += [f"| {h} | {_pct(float(v))} |" for h, v in agreement.items()]
    lines += ["", "## Verdicts", ""] + [f"- **{k}**: {v}." for k, v in RULES.items()]
    if result.runs:
        lines += ["", "## Runs", "", "```json", json.dumps(json_safe(result.runs), indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def write_report(result: GateResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``gate.json`` and ``gate.md`` into ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "gate.json", out / "gate.md"
    write_json_atomic(js, result.to_dict())
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text(to_markdown(result))
    tmp.replace(md)
    return js, md
