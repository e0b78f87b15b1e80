"""The report section of a ``splitimpera measure`` folder: simulated vs measured, per design point.

A measure folder holds ``fidelity.csv`` (one row per split, bottleneck and mode),
``fidelity.json`` (setup, timings, summary) and ``scenario.yaml``; the report shows the
table, the summary errors and a plot of simulated against measured latency.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..plain import ms, signed_pct
from ..results.fidelity import FidelityDir

_COMPONENTS = (("device_wait_s", "dev wait"), ("device_compute_s", "device"), ("uplink_s", "uplink"), ("server_wait_s", "srv wait"),
               ("server_compute_s", "server"), ("downlink_s", "downlink"))


def plot_fidelity(fd: FidelityDir, png) -> bytes:
    """Simulated against measured mean (dots) and p95 (crosses) latency per point and mode,
    log-log, with the y = x line and a ±10 % band. ``png`` renders a matplotlib figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    t = fd.table
    vals = pd.concat([t[c] for c in ("sim_latency_mean_s", "meas_latency_mean_s", "sim_latency_p95_s",
                                     "meas_latency_p95_s")]).to_numpy(dtype=float) * 1e3
    vals = vals[np.isfinite(vals) & (vals > 0)]
    lo, hi = (vals.min() / 1.5, vals.max() * 1.5) if len(vals) else (0.1, 10.0)
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, color="0.3", lw=1, label="simulated = measured")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.85", label="±10 %")
    for k, (mode, g) in enumerate(t.groupby("mode", sort=False)):
        color = f"C{k}"
        ax.scatter(g["meas_latency_mean_s"] * 1e3, g["sim_latency_mean_s"] * 1e3, color=color, marker="o",
                   label=f"mean ({mode} compute)")
        ax.scatter(g["meas_latency_p95_s"] * 1e3, g["sim_latency_p95_s"] * 1e3, color=color, marker="x",
                   label=f"p95 ({mode} compute)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms, log)")
    ax.set_ylabel("simulated latency (ms, log)")
    ax.set_title("Simulator vs the real split run, one marker per design point", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return png(fig)


def fidelity_section(fd: FidelityDir, img, png) -> str:
    """HTML of one measure folder. ``img(png_bytes, alt)`` embeds a figure, ``png(figure)`` renders one."""
    setup = fd.doc.get("setup", {})
    link = setup.get("link", {})
    head = (f"<h2>{html.escape(fd.name)}: the real split run against the simulation</h2>"
            f"<p class=\"muted\">Link: {html.escape(str(link.get('kind', '?')))}, "
            f"{float(link.get('uplink_mbps', float('nan'))):.4g} Mbit/s, no propagation delay (RTT 0 in the "
            f"simulation); cores device {setup.get('cores', {}).get('device')} / server "
            f"{setup.get('cores', {}).get('server')}, {setup.get('threads')} torch thread(s); "
            f"{setup.get('devices')} device(s), {setup.get('requests_per_device')} requests each. "
            "Error = (simulated − measured) / measured.</p>")
    rows = []
    for mode, s in fd.doc.get("summary", {}).items():
        m, p = s.get("latency_mean_s", {}), s.get("latency_p95_s", {})
        comp = ", ".join(f"{c.replace('_s', '').replace('_', ' ')} {v * 100:.1f} %"
                         for c, v in s.get("components_median_abs_err", {}).items())
        rows.append(f"<li><b>{html.escape(mode)} compute</b>, {s.get('points')} point(s): median |error| of the "
                    f"mean {m.get('median_abs_err', float('nan')) * 100:.1f} % (max "
                    f"{m.get('max_abs_err', float('nan')) * 100:.1f} %), of the p95 "
                    f"{p.get('median_abs_err', float('nan')) * 100:.1f} % (max "
                    f"{p.get('max_abs_err', float('nan')) * 100:.1f} %); per component: {html.escape(comp)}</li>")
    cols = ["split", "bottleneck", "mode", "rate Hz", "ρ server", "requests", "lost", "mean ms sim / meas", "error",
            "p95 ms sim / meas", "error"] + [f"{n} ms sim / meas" for _, n in _COMPONENTS]
    body = []
    for _, r in fd.table.iterrows():
        cells = [r["split"], r["bottleneck"], r["mode"], f"{r['rate_hz']:.3g}", f"{r['server_rho']:.2f}",
                 f"{int(r['requests'])}", f"{int(r['lost'])}",
                 f"{ms(r['sim_latency_mean_s'])} / {ms(r['meas_latency_mean_s'])}", signed_pct(r["err_latency_mean_s"]),
                 f"{ms(r['sim_latency_p95_s'])} / {ms(r['meas_latency_p95_s'])}", signed_pct(r["err_latency_p95_s"])]
        cells += [f"{ms(r['sim_' + c])} / {ms(r['meas_' + c])}" for c, _ in _COMPONENTS]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    table = ("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>" + "".join(body)
             + "</table>")
    return "\n".join([head, "<ul>" + "".join(rows) + "</ul>", img(plot_fidelity(fd, png), "simulated vs measured latency"),
                      table])
