"""The verification's words: ``report.md`` (every figure) and ``README.md`` (the model card) of an artifact.

Both are built from one :class:`training.verify.VerifyReport` and the artifact's config (data,
provenance, training energy), section by section; the card carries the headline figures and points
to the report for the rest, so no figure is computed twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["card_markdown", "report_markdown", "summary_lines", "write_card"]


def _pct(v: Any, digits: int = 2) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not math.isfinite(f) else f"{100 * f:.{digits}f}"


def _energy_lines(energy: Mapping[str, Any]) -> list[str]:
    lines = []
    for st in (energy.get("training") or {}).get("stages", []):
        lines.append(f"- {st.get('stage')}: {st.get('line') or st}")
    v = energy.get("verify")
    if v:
        lines.append(f"- verify: {v.get('line') or v}")
    tot = (energy.get("training") or {}).get("total")
    if tot:
        lines.append(f"- training total: {float(tot.get('kwh', 0)):.4g} kWh, {float(tot.get('kg_co2e', 0)):.4g} kg CO2e")
    return lines or ["- no energy record (the run predates energy accounting)"]


def _metrics_table(report: Any) -> list[str]:
    m = report.test.metrics
    heads = sorted({k.split("_", 1)[0] for k in m})
    lines = ["| head | mIoU (%) | F1 (%) | pixel accuracy (%) | key IoU (%) | threshold | ECE (%) | agreement with teacher (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for h in heads:
        key = f"{h}_IoU_building" if f"{h}_IoU_building" in m else f"{h}_mIoU"
        cal = report.test.calibration.get(h)
        lines.append(f"| {h} | {_pct(m.get(f'{h}_mIoU'))} | {_pct(m.get(f'{h}_F1'))} | {_pct(m.get(f'{h}_pixel_acc'))} "
                     f"| {key}: {_pct(m.get(key))} | {report.test.thresholds.get(h) or 'argmax'} "
                     f"| {_pct(None if cal is None else cal.ece)} | {_pct(report.test.agreement.get(h))} |")
    return lines


def _per_class(report: Any) -> list[str]:
    m = report.test.metrics
    rows = [(k.split("_IoU_")[0], k.split("_IoU_")[1], v) for k, v in m.items() if "_IoU_" in k]
    return ["| head | class | IoU (%) |", "|---|---|---|"] + [f"| {h} | {c} | {_pct(v)} |" for h, c, v in rows]


def _backends(report: Any) -> list[str]:
    b = report.backends
    lines = [f"CPU: {b.cpu}; bf16 flags: {', '.join(b.cpu_flags) or 'none'}; {b.samples} test chips, IEEE fp32.", "",
             "| backend | argmax agreement with torch (%) | max abs prob. difference | s / chip | Mpx / s | note |",
             "|---|---|---|---|---|---|"]
    for r in b.backends.values():
        agree = ", ".join(f"{h} {_pct(v, 3)}" for h, v in r.agreement.items()) or "-"
        diff = ", ".join(f"{h} {v:.2e}" for h, v in r.max_abs_diff.items()) or "-"
        sec = "-" if r.seconds_per_chip is None or not math.isfinite(r.seconds_per_chip) else f"{r.seconds_per_chip:.3f}"
        mps = "-" if r.megapixels_per_s is None or not math.isfinite(r.megapixels_per_s) else f"{r.megapixels_per_s:.3f}"
        lines.append(f"| {r.backend} | {agree} | {diff} | {sec} | {mps} | {r.skipped or ''} |")
    return lines


def _sniff(report: Any, root: Path) -> list[str]:
    sn = report.sniff
    if sn is None:
        return ["Not run (`--sniff skip`)."]
    lines = [(f"Catalog: {sn.catalog}. {'Judged' if sn.judged else 'Not judged: ' + sn.note}. "
              f"{sn.passed} of {len(sn.rows)} areas hold."), "",
             "| area | expected land cover | dominant | expected buildings | building share (%) | holds | panel |",
             "|---|---|---|---|---|---|---|"]
    for r in sn.rows:
        panel = f"[png]({Path(r.quicklook).relative_to(root)})" if r.quicklook else (r.error or "")
        lines.append(f"| {r.area} | {' or '.join(r.expected_lulc)} | {r.dominant or '-'} | {r.expected_buildings} "
                     f"| {_pct(r.building_share)} | {'yes' if r.ok else 'no'} | {panel} |")
    return lines


def _gate(report: Any) -> list[str]:
    g = report.gate
    if g is None:
        return ["Not run (no `--teachers`)."]
    lines = [f"Verdict: **{g.verdict}**" if g.verdict else "No verdict", "", f"{g.rule}.", "",
             "| head | metric | student (%) | teacher (%) | difference (pp) |", "|---|---|---|---|---|"]
    lines += [f"| {h} | {c.metric} | {_pct(c.multi)} | {_pct(c.single)} | {c.delta_pp:+.2f} |" for h, c in g.heads.items()]
    return lines


def _checks(report: Any) -> list[str]:
    f, t = report.finite, report.round_trip
    bad = ", ".join(n for n, *_ in f.bad) or "none"
    return [f"- weights: {f.tensors} tensors, {f.parameters:,} values; tensors with NaN/Inf: {bad}",
            f"- safetensors round trip: {'identical' if t.identical else 'DIFFERS: ' + ', '.join(t.mismatched)}",
            (f"- backends: lowest argmax agreement with torch {_pct(report.backends.min_agreement, 3)} % "
             f"(target >= 99.9 %): {'pass' if report.backends_ok else 'FAIL'}")]


def _data(config: Any, index: Any) -> list[str]:
    tr = dict(config.training or {})
    ds = dict(tr.get("dataset") or {})
    lines = [f"- dataset: {ds.get('name', '?')}, chips {ds.get('chips', {})}, split {ds.get('split', {})}",
             f"- sources: {ds.get('sources') or index.meta.get('sources', {})}"]
    dist = tr.get("distillation")
    if dist:
        for h, t in dict(dist.get("teachers") or {}).items():
            lines.append(f"- teacher of {h}: {t.get('source')} ({t.get('name')} {t.get('version') or ''}, "
                         f"sha256 {str(t.get('sha256'))[:12]}...)")
        lines.append(f"- distillation: {dist.get('options')}, labels mixed in: {dist.get('labels')}")
    return lines


def _bins(report: Any) -> int:
    return int(next(iter(report.test.calibration.values())).n_bins) if report.test.calibration else 0


def report_markdown(report: Any, config: Any, index: Any) -> str:
    """``report.md``: every figure of the verification."""
    root = Path(report.artifact)
    parts = [f"# Verification report: {config.name} {config.version}", "",
             f"Result: **{'PASS' if report.ok else 'FAIL'}**", "", "## Checks", "", *_checks(report), "",
             "## Test split (held out)", "", f"{report.test.chips} chips, {report.test.pixels:,} pixels.", "",
             *_metrics_table(report), "", *_per_class(report), "", "## Calibration", "",
             (f"Expected calibration error over {_bins(report)} equal-width bins of top-label confidence (labels -1 ignored): "
              "[reliability diagram](verify/reliability.png)."), "", "## Backends and throughput", "",
             *_backends(report), "", "## Gate against the teachers", "", *_gate(report), "",
             "## Sniff areas", "", *_sniff(report, root), "", "## Data", "", *_data(config, index), "",
             "## Energy", "", *_energy_lines(report.energy), ""]
    return "\n".join(parts)


def card_markdown(report: Any, config: Any, index: Any) -> str:
    """``README.md``: the model card."""
    base = "ibm-esa-geospatial/TerraMind-1.0-" + config.encoder.split("_")[-1] if config.encoder else ""
    heads = ", ".join(f"`{h.name}` ({', '.join(h.classes)})" for h in config.heads)
    mods = "; ".join(f"{m.name}: {', '.join(m.bands)}" for m in config.modalities)
    parts = ["---", f"license: {config.license or 'other'}", "library_name: terramind_nyc", f"base_model: {base}",
             "tags: [earth-observation, semantic-segmentation, terramind, sentinel-2, sentinel-1, new-york-city]",
             "---", "", f"# {config.name} {config.version}", "",
             (f"One TerraMind encoder (`{config.encoder}`) shared by {len(config.heads)} head(s): {heads}. "
              f"Tiles of {config.tile_size} px at 10 m; inputs {mods}."), "",
             "```python", "from terramind_nyc import fetch, Settings",
             f"s = Settings(checkpoint=\"{Path(report.artifact).name}\")  # this folder, or its hub repo id",
             "r = fetch(40.7484, -73.9857, settings=s)",
             "r.building_density, r.lulc_fractions", "```", "", "## Training data", "", *_data(config, index), "",
             "## Evaluation (test split)", "", *_metrics_table(report), "", "## Gate", "", *_gate(report), "",
             "## Verification", "", *_checks(report), "", "## Energy", "", *_energy_lines(report.energy), "",
             "## Limitations", "",
             "- The decoders predict at a quarter of the input resolution and upsample; single small buildings blur.",
             "- Figures are for the dataset above; the sniff panels (report) show ten NYC areas qualitatively.", "",
             "Every figure, per class and per backend, is in [report.md](report.md).", ""]
    return "\n".join(parts)


def write_card(report: Any, config: Any, index: Any) -> tuple[Path, Path]:
    """Write ``report.md`` and ``README.md`` into the artifact (atomically); return both paths."""
    root = Path(report.artifact)
    out = []
    for name, text in (("report.md", report_markdown(report, config, index)),
                       ("README.md", card_markdown(report, config, index))):
        path = root / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        out.append(path)
    return out[0], out[1]


def summary_lines(report: Any) -> list[str]:
    """The terminal summary of a verification."""
    lines = [f"artifact   {report.artifact}: {'PASS' if report.ok else 'FAIL'}", *(x[2:] for x in _checks(report))]
    for h, cal in report.test.calibration.items():
        key = f"{h}_IoU_building" if f"{h}_IoU_building" in report.test.metrics else f"{h}_mIoU"
        lines.append(f"test {h}: {key} {_pct(report.test.metrics.get(key))} %, ECE {_pct(cal.ece)} %")
    if report.gate is not None:
        lines.append(f"gate: {report.gate.outcome}")
    if report.sniff is not None:
        lines.append(f"sniff: {report.sniff.passed}/{len(report.sniff.rows)} hold "
                     f"({'judged' if report.sniff.judged else 'not judged'}); panels in {report.files.get('sniff_panels')}")
    lines.append(f"report {report.files['report']}, model card {report.files['model_card']}")
    return lines
