"""EvaluationResult: metrics with errors and reference-vs-reference floors; JSON and HTML report."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field

from farm import store

# Metrics shown first in tables (when present), in this order.
HEADLINE = (
    "auc_low",
    "auc_high",
    "jsd_low",
    "jsd_high",
    "fpd",
    "kpd",
    "sep_mean",
    "sep_max",
    "sep_voxel_spectrum",
    "w1m",
    "w1p",
)


def _fmt(value: float | None, error: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.4g}"
    if error is not None and not math.isnan(error):
        text += f" ± {error:.2g}"
    return text


@dataclass
class EvaluationResult:
    """Metrics of generated vs reference: name -> {value, error, floor, floor_error}.

    `floor` is the same metric on two disjoint halves of the reference (the noise floor);
    the generated sample is compared with the first half at the size of the second, so value
    and floor are directly comparable.
    """

    kind: str
    metrics: dict[str, dict] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    out_url: str | None = None

    def add(
        self,
        name: str,
        value: tuple[float, float],
        floor: tuple[float, float] | None = None,
        **extra,
    ) -> None:
        """Record a metric from (value, error) and optional (floor, floor_error) tuples."""
        entry = {"value": float(value[0]), "error": float(value[1])}
        if floor is not None:
            entry["floor"], entry["floor_error"] = float(floor[0]), float(floor[1])
        entry.update(extra)
        self.metrics[name] = entry

    def headline(self) -> list[str]:
        """Names of the summary metrics present, in display order."""
        return [name for name in HEADLINE if name in self.metrics]

    def table(self, full: bool = False, worst: int = 10) -> list[list[str]]:
        """Rows [metric, value ± error, floor ± error]: headline metrics, then per-feature ones.

        Without `full`, only the `worst` per-feature separation powers (largest value - floor).
        """
        names = self.headline()
        rest = [n for n in self.metrics if n not in names]
        if not full:
            seps = [n for n in rest if n.startswith("sep/")]
            seps.sort(key=lambda n: -(self.metrics[n]["value"] - self.metrics[n].get("floor", 0)))
            rest = seps[:worst]
        rows = []
        for name in names + rest:
            m = self.metrics[name]
            rows.append(
                [name, _fmt(m["value"], m.get("error")), _fmt(m.get("floor"), m.get("floor_error"))]
            )
        return rows

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "metrics": self.metrics,
            "details": self.details,
            "notes": self.notes,
            "plots": self.plots,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=float)

    def write(self, out_url: str) -> None:
        """Write metrics.json and report.html under out_url (plots already written there)."""
        self.out_url = out_url
        store.write_text(store.join(out_url, "metrics.json"), self.to_json() + "\n")
        store.write_text(store.join(out_url, "report.html"), render_html(self))


def render_html(result: EvaluationResult) -> str:
    """A one-page HTML report: details, headline and worst per-feature metrics, the plots."""
    esc = html.escape
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
        for row in result.table(full=False, worst=15)
    )
    details = "".join(
        f"<li><b>{esc(str(k))}</b>: {esc(str(v))}</li>"
        for k, v in result.details.items()
        if not isinstance(v, dict)
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in result.notes)
    images = "\n".join(
        f'<figure><img src="{esc(p)}" alt="{esc(p)}"><figcaption>{esc(p)}</figcaption></figure>'
        for p in result.plots
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>farm evaluation ({esc(result.kind)})</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
th {{ background: #eee; }} figure {{ display: inline-block; margin: 6px; }}
img {{ max-width: 440px; }} figcaption {{ font-size: small; color: #555; }}
</style></head><body>
<h1>farm evaluation: {esc(result.kind)}</h1>
<ul>{details}</ul>
<h2>Metrics</h2>
<p>value: generated vs reference half A; floor: reference half B vs half A (same sizes).
All metrics: 0 (AUC: 0.5) for indistinguishable samples. Full list in metrics.json.</p>
<table><tr><th>metric</th><th>value</th><th>floor (ref vs ref)</th></tr>
{rows}
</table>
{"<h2>Notes</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>Plots</h2>
{images}
</body></html>
"""
