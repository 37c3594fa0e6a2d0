"""EvaluationResult: metrics with errors and reference-vs-reference floors; JSON and HTML report."""

from __future__ import annotations

import html
import json
import math
import time
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
    "w1m_gev",
    "w1p",
)


def _fmt(value: float | None, error: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.4g}"
    if error is not None and not math.isnan(error) and error > 0:
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
    verdict: str | None = None  # pass | fail | ungated, once gates were checked
    failures: list[str] = field(default_factory=list)

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

    def add_summary(self, name: str, value: float, floor: float | None = None, **extra) -> None:
        """Record a metric that has no error of its own (a mean or maximum over metrics)."""
        entry = {"value": float(value), "error": None}
        if floor is not None:
            entry["floor"], entry["floor_error"] = float(floor), None
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

    def values(self) -> dict[str, float]:
        """Metric name -> value (what gates are checked against)."""
        return {name: m["value"] for name, m in self.metrics.items()}

    def set_verdict(self, verdict: str, failures: list[str]) -> None:
        """Record the gates' verdict (rewrite the report with `write` to show it)."""
        self.verdict, self.failures = verdict, list(failures)

    def to_dict(self) -> dict:
        """The result as JSON-able data (metrics.json)."""
        return {
            "kind": self.kind,
            "metrics": self.metrics,
            "details": self.details,
            "notes": self.notes,
            "plots": self.plots,
            "verdict": self.verdict,
            "failures": self.failures,
        }

    def to_json(self) -> str:
        """The result as an indented JSON string (the contents of metrics.json)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=float)

    def write(self, out_url: str) -> None:
        """Write metrics.json and report.html under out_url (plots already written there)."""
        self.out_url = out_url
        self.details.setdefault("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        store.write_text(store.join(out_url, "metrics.json"), self.to_json() + "\n")
        store.write_text(store.join(out_url, "report.html"), render_html(self))


REPORT_FIRST = (
    "model",
    "campaign",
    "generated",
    "reference",
    "geometry",
    "n_reference",
    "n_generated",
    "n_compared",
    "date",
)
REPORT_NAMES = {
    "n_reference": "reference events",
    "n_generated": "generated events",
    "n_compared": "events per compared sample (half B and G)",
    "threshold_mev": "voxel threshold [MeV]",
}


def _detail(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def render_html(result: EvaluationResult) -> str:
    """A one-page HTML report: details, headline and worst per-feature metrics, the plots."""
    esc = html.escape
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
        for row in result.table(full=False, worst=15)
    )
    shown = [k for k in REPORT_FIRST if k in result.details]
    shown += [
        k for k in result.details if k not in shown and not isinstance(result.details[k], dict)
    ]
    details = "".join(
        f"<li><b>{esc(REPORT_NAMES.get(k, k))}</b>: {esc(_detail(result.details[k]))}</li>"
        for k in shown
    )
    verdict = ""
    if result.verdict:
        color = {"pass": "#1a7f37", "fail": "#cf222e"}.get(result.verdict, "#9a6700")
        failed = "".join(f"<li>{esc(f)}</li>" for f in result.failures)
        verdict = (
            f'<p style="font-size:1.3em">gates: <b style="color:{color}">{esc(result.verdict)}</b>'
            f"</p>{'<ul>' + failed + '</ul>' if failed else ''}"
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
{verdict}
<ul>{details}</ul>
<h2>Metrics</h2>
<p>value: generated vs reference half A; floor: reference half B vs half A (same sizes).
All metrics: 0 (AUC: 0.5) for indistinguishable samples. ± is the metric's bootstrap standard
deviation (classifier AUCs: its standard error); means and maxima over features carry none.
Full list in metrics.json.</p>
<table><tr><th>metric</th><th>value</th><th>floor (ref vs ref)</th></tr>
{rows}
</table>
{"<h2>Notes</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>Plots</h2>
{images}
</body></html>
"""
