"""Self-contained HTML reports (``splitimpera report DIR… -o FILE``), rendered from results in
memory (:func:`render_html`); :func:`render_report` reads the folders first
(:func:`~splitimpera.results.folder.load_result`).

The report opens offline: plots are PNGs embedded as data URIs, no script, no external
asset. One folder gives a single-scenario report; several add a comparison of the
recommended split across scenarios.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write
from ..errors import UserError
from ..plain import human_bytes, ms, num
from ..qos import describe_objective, describe_qos
from ..results.fidelity import FidelityDir, is_fidelity_dir, load_fidelity_dir
from ..results.folder import load_result, result_dirs
from .fidelity import fidelity_section, plot_fidelity
from .figures import (comparison, comparison_figure, figures, has_accuracy, has_exits, plot_accuracy_bytes,
                      plot_breakdown, plot_bytes, plot_choice, plot_exits, plot_tradeoff, saved_cui)
from .plots import png_bytes
from .text import cell_text
from .view import View, accuracy_footnote, accuracy_text, compute_error_sentence


def _accuracy_html(v: View) -> str:
    """Predictor validation per bottleneck and the Grad-CAM vs random channel comparison."""
    doc = v.result.analysis.accuracy_summary or {}
    per = (doc.get("predictor") or {}).get("per_bottleneck") or {}

    def pts(v):
        return "–" if v is None else f"{v * 100:.2f}"

    rows = "".join(
        f"<tr><td class=\"l\">{html.escape(b)}</td><td>{count_text(r.get('splits'))}</td>"
        f"<td>{'–' if r.get('spearman') is None else format(r['spearman'], '+.2f')}</td>"
        f"<td>{pts(r.get('loo_mae'))}</td><td>{pts(r.get('baseline_loo_mae'))}</td></tr>"
        for b, r in per.items())
    out = ["<h3>Accuracy under bottlenecks</h3>",
           f'<p class="muted">{doc.get("evaluation_samples", "?")} evaluation samples'
           + (f'; learning bottlenecks fitted on {html.escape(str(doc["calibration"]))}' if doc.get("calibration")
              else "") + ". CUI as a predictor of accuracy: isotonic fit on log10 CUI, leave-one-out mean "
           "absolute error in points, against predicting the mean of the other splits.</p>",
           "<div class=\"wrap\"><table><thead><tr><th class=\"l\">bottleneck</th><th>splits</th><th>Spearman</th>"
           f"<th>LOO MAE</th><th>baseline MAE</th></tr></thead><tbody>{rows}</tbody></table></div>"]
    ch = doc.get("channels_gradcam_vs_random") or {}
    if ch:
        crow = "".join(f"<tr><td class=\"l\">{html.escape(f)}</td><td>{count_text(c['splits'])}</td>"
                       f"<td>{count_text(c['gradcam_better'])}</td><td>{count_text(c['random_better'])}</td><td>{pts(c.get('mean_difference'))}</td></tr>"
                       for f, c in ch.items())
        out.append("<p>Channels kept by Grad-CAM importance vs at random, same channel count (equal bytes):</p>"
                   "<div class=\"wrap\"><table><thead><tr><th class=\"l\">kept</th><th>splits</th>"
                   "<th>Grad-CAM better</th><th>random better</th><th>mean Δ (pts)</th></tr></thead>"
                   f"<tbody>{crow}</tbody></table></div>")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# HTML

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.05rem;margin-top:1.4rem} .muted{color:#666;font-size:.9rem}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0} th,td{padding:.25rem .55rem;border-bottom:1px solid #eee;text-align:right;white-space:nowrap} td.l{white-space:normal}
th{background:#f6f6f6;white-space:normal;vertical-align:bottom} td.l,th.l{text-align:left} tr.rec td{background:#fff4d6;font-weight:600} tr.bad td{color:#888}
.verdict{padding:.7rem 1rem;border-radius:6px;margin:.8rem 0} .ok{background:#e9f7ef;border:1px solid #b7e1c7} .no{background:#fdecea;border:1px solid #f5c2bd}
.wrap{overflow-x:auto} img{max-width:100%;height:auto;display:block;margin:.5rem 0} pre{background:#f7f7f7;padding:.8rem;overflow:auto;font-size:.78rem}
"""


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def count_text(v) -> str:
    """A count as an integer (``15``, never ``15.0``); "" when absent."""
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(int(round(float(v))))


LEFT = ("split", "bottleneck", "config", "reason")  # text columns, aligned left


def _verdict(view: View) -> str:
    """The verdict of :meth:`View.verdict`, as HTML."""
    v = view.verdict()
    if v.ok:
        return (f'<div class="verdict ok"><b>{html.escape(v.headline)}</b> '
                f"{html.escape(' '.join(v.details))}</div>")
    items = "".join(
        f"<li><b>{html.escape(label)}</b>: {html.escape(reason)}"
        + (f" — would pass with {html.escape('; or '.join(tips))}" if tips else "") + "</li>"
        for label, reason, tips in v.closest)
    note = "".join(f" {html.escape(d)}" for d in v.details)
    return (f'<div class="verdict no"><b>{html.escape(v.headline)}</b>{note} '
            f"Closest, and what would have to change (first-order estimates):<ul>{items}</ul></div>")


def _best_html(v: View) -> str:
    """The best split per bottleneck, beside the joint ranking (several bottlenecks only)."""
    if not v.multi:
        return ""
    rows = []
    for b, r in v.best_per_bottleneck().iterrows():
        acc = "" if pd.isna(r["accuracy"]) else accuracy_text(r["accuracy"], r.get("accuracy_source"), unit="",
                                                                  band=r.get("accuracy_band"))
        rows.append(f'<tr class="{"" if r["feasible"] else "bad"}"><td class="l">{html.escape(str(b))}</td>'
                    f'<td class="l">{html.escape(r["split"])}</td><td>{"" if pd.isna(r["rank"]) else int(r["rank"])}</td>'
                    f'<td>{count_text(r["feasible_splits"])}</td><td>{human_bytes(r["bytes_sent"])}</td>'
                    f'<td>{ms(r["latency_qos_s"], missing="")}</td><td>{acc}</td>'
                    f'<td class="l">{html.escape("ok" if r["feasible"] else str(r["reason"]))}</td></tr>')
    stat = v.statistic
    return ("<h3>Best split per bottleneck</h3><div class=\"wrap\"><table><thead><tr><th class=\"l\">bottleneck</th>"
            "<th class=\"l\">best split</th><th>rank</th><th>feasible splits</th><th>sent</th>"
            f"<th>{'latency' if stat == 'mean' else stat} ms</th><th>accuracy %</th><th class=\"l\">verdict</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
            + (f'<p class="muted">{html.escape(note)}</p>' if (note := accuracy_footnote(
                v.best_per_bottleneck()["accuracy_source"])) else ""))


def _table(v: View) -> str:
    """The ranked table: :meth:`View.columns` over every point, formatted as the terminal does
    (:func:`~splitimpera.report.text.cell_text`); ``≈`` marks a rank tied with the first within
    the compute model's error, ``±`` that error on the latency the ranking uses."""
    t = v.all_rows()
    rec = v.recommended
    cols = v.columns()
    values = v.rows(t)
    ranked = v.latency_column  # the column the ± band of the compute model's error goes with
    head = "".join(f'<th class="{"l" if c.key in LEFT else ""}">{html.escape(c.label)}</th>' for c in cols)
    rows = []
    for point, r in t.iterrows():
        cls = "rec" if point == rec else ("" if r["feasible"] else "bad")
        cells = []
        for c in cols:
            txt = cell_text(c, values.at[point, c.key], r)
            if c.key == "rank" and r.get("tie") in (True, "True"):
                txt += " ≈"
            band = r.get("latency_err_s", np.nan)
            if c.key == ranked and pd.notna(band) and np.isfinite(band) and band > 0:
                txt += f" ± {ms(band)}"
            cells.append(f'<td class="{"l" if c.key in LEFT else ""}">{html.escape(txt)}</td>')
        rows.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    note = accuracy_footnote(t["accuracy_source"]) if any(c.key == "accuracy" for c in cols) else ""
    sc = v.result.scenario
    modes = v.result.meta.get("compute") or {}
    err = compute_error_sentence(v, modes, sc.device.name, sc.server.name)
    if modes.get("device"):
        err = f"compute: {sc.device.name} {modes['device']}; {sc.server.name} {modes['server']}. " + err
    return (f"<div class=\"wrap\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            + (f'<p class="muted">{html.escape(note)}</p>' if note else "")
            + (f'<p class="muted">{html.escape(err)}</p>' if err else ""))


def _section(v: View, level: int = 2) -> str:
    sc = v.result.scenario
    h = f"h{level}"
    qos_txt = f"{describe_qos(sc.qos, sc.device)}; {describe_objective(sc.qos)}"
    parts = [
        f"<{h} id=\"{html.escape(v.name)}\">{html.escape(v.name)}</{h}>",
        f'<p class="muted">{html.escape(sc.model.name)} on {html.escape(sc.device.name)} → '
        f'{html.escape(sc.network.name)} → {html.escape(sc.server.name)}; '
        f'{sc.workload.num_devices} device(s); QoS: {html.escape(qos_txt)}</p>',
        _verdict(v),
        _best_html(v),
        _table(v),
        img(plot_breakdown(v), "latency breakdown"),
        *([img(plot_tradeoff(v, "accuracy"), "accuracy vs latency")] if has_accuracy(v) else []),
        *([img(plot_exits(v), "early exit: accuracy vs latency per threshold")] if has_exits(v) else []),
        img(plot_tradeoff(v, "energy"), "energy vs latency"),
        img(plot_bytes(v), "bytes per split"),
    ]
    if (cui := saved_cui(v)) is not None:
        parts.append(img(cui, "CUI curve"))
    if v.result.analysis is not None and v.result.analysis.accuracy is not None:
        parts += [_accuracy_html(v), img(plot_accuracy_bytes(v), "accuracy vs bytes")]
    parts.append(f"<details><summary>Scenario (fully resolved)</summary><pre>{html.escape(sc.to_yaml())}</pre>"
                 "</details>")
    return "\n".join(parts)


# The comparison table's headers, short enough to fit the page.
_COMPARISON_HEAD = {"uplink_mbps": "uplink Mbit/s", "num_devices": "devices", "max_latency_ms": "limit ms",
                    "device_flops_share": "FLOPs on device", "latency_ms": "latency ms", "margin_ms": "margin ms",
                    "feasible": "feasible points"}


def _comparison_html(df: pd.DataFrame) -> str:
    cols = [c for c in df.columns if df[c].notna().any()]  # no empty column
    text = {"scenario", "model", "device", "network", "recommended"}
    head = "".join(f"<th class=\"{'l' if c in text else ''}\">{html.escape(_COMPARISON_HEAD.get(c, c))}</th>"
                   for c in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if v is None or (isinstance(v, float) and np.isnan(v)):
                txt = ""
            elif c == "device_flops_share":
                txt = f"{num(v * 100)} %"
            elif c == "num_devices":
                txt = count_text(v)
            else:
                txt = num(v, 4) if isinstance(v, (float, int, np.number)) and not isinstance(v, bool) else str(v)
            if c == "scenario":
                txt = f'<a href="#{html.escape(str(v))}">{html.escape(str(v))}</a>'
            else:
                txt = html.escape(txt)
            cells.append(f'<td class="{"l" if c in text else ""}">{txt}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<div class=\"wrap\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def render_html(views: list[View], fidelity: list[FidelityDir] = (), title: str | None = None) -> str:
    """The HTML text of a report over results in memory (each as its :class:`View`) and
    measure folders read (``fidelity``)."""
    if not views and not fidelity:
        raise UserError("no result folder given", source="report")
    if not views:
        title = title or f"splitimpera measure: {fidelity[0].name if len(fidelity) == 1 else f'{len(fidelity)} runs'}"
    title = title or (f"splitimpera report: {views[0].name}" if len(views) == 1 else
                      f"splitimpera report: {len(views)} scenarios")
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             '<p class="muted">Split computing design-space report. FLOPs count one per multiply-add '
             "(fvcore). Latency and energy per inference.</p>"]
    if len(views) > 1:
        cmp = comparison(views)
        parts += ["<h2>Comparison</h2>", _comparison_html(cmp)]
        if cmp["device_flops_share"].notna().any():
            parts.append(img(plot_choice(cmp), "how the recommended cut moves"))
    for v in views:
        parts.append(_section(v))
    for fd in fidelity:
        parts.append(fidelity_section(fd, img, png_bytes))
    parts.append("</body></html>")
    return "\n".join(parts)


def load_views(dirs: list[str | Path]) -> tuple[list[View], list[FidelityDir]]:
    """The results and measure folders named by ``dirs`` (see
    :func:`~splitimpera.results.folder.result_dirs`), read."""
    found = result_dirs(dirs)
    fids = [load_fidelity_dir(d) for d in found if is_fidelity_dir(d)]
    views = [View.of(load_result(d)) for d in found if not is_fidelity_dir(d)]
    return views, fids


def render_report(dirs: list[str | Path], title: str | None = None) -> str:
    """The HTML text of a report over one or more result folders."""
    return render_html(*load_views(dirs), title=title)


def write_report(dirs: list[str | Path], out_file: str | Path, title: str | None = None,
                 png: bool = False) -> Path:
    """Render and write the report atomically (temporary file, then rename).

    ``dirs``: result folders, or folders holding them
    (:func:`~splitimpera.results.folder.result_dirs`).
    ``png``: also write each plot as a PNG (for papers) into ``<report stem>_figures/``,
    named ``<scenario>_<plot>.png``.
    """
    views, fids = load_views(dirs)
    text = render_html(views, fids, title)
    out = Path(out_file)
    folder = out.parent / f"{out.stem}_figures"
    try:
        if png:
            for fd in fids:
                atomic_write(folder / f"{fd.name}_fidelity.png", plot_fidelity(fd, png_bytes))
            for v in views:
                for name, data in figures(v).items():
                    atomic_write(folder / f"{v.name}_{name}", data)
            if (choice := comparison_figure(views)) is not None:
                atomic_write(folder / "comparison.png", choice)
        atomic_write(out, text.encode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot write the report: {e.strerror}", source=str(out)) from None
    return out
