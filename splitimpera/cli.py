"""Command-line interface: a thin shell over the public API.

Exit codes: 0 success, 2 bad user input (one line naming the file and the field), 1 internal
error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from .errors import UserError

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2
THREADS_ENV = "SPLITIMPERA_THREADS"
THREADS_HELP = f"torch CPU threads at most (default: ${THREADS_ENV}, else torch's default)"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        raise UserError(message, source=self.prog)


def _cmd_simulate(args) -> int:
    from .pipeline import run
    from .report.text import render_result
    from .config.scenario import load_scenario, parse_overrides
    from .results import check_output_dir

    if args.top is not None and args.top < 1:
        raise UserError(f"must be at least 1 (got {args.top})", source="simulate", field="--top")
    if args.report and args.output is None:
        raise UserError("needs -o DIR (the report is written beside the results)", source="simulate",
                        field="--report")
    sc = load_scenario(args.scenario, parse_overrides(args.set))
    if args.output is not None:  # before the work, not after it
        check_output_dir(args.output, sc, field="-o")
    res = run(sc, progress=_sim_progress)
    print(render_result(res, top=args.top))
    if args.output is not None:
        folder = res.save(args.output)
        files = "splits.csv, splits.parquet, result.json, scenario.yaml" + (", requests.parquet" if res.sim is not None else "")
        if args.report:
            from .report.html import write_report

            write_report([folder], folder / "report.html")
            files += ", report.html"
        print(f"\nwrote {folder}/ ({files})")
    return EXIT_OK if res.recommended is not None or not args.strict else 3


def _sim_progress(size):
    """Before a simulation: its size on stderr when it is long, and a progress bar on a terminal."""
    if size.seconds >= 5:
        print(f"simulating {size.text()}", file=sys.stderr, flush=True)
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=size.total, desc="simulating", unit="req", unit_scale=True, leave=False, file=sys.stderr)


def _cmd_report(args) -> int:
    from pathlib import Path

    from .atomic import check_writable_dir, check_writable_file
    from .report.html import write_report

    check_writable_file(args.output, field="-o")
    if args.png:
        out = Path(args.output)
        check_writable_dir(out.parent / f"{out.stem}_figures", field="--png")
    out = write_report(args.dirs, args.output, title=args.title, png=args.png)
    print(f"wrote {out}" + (f" and {out.parent / (out.stem + '_figures')}/" if args.png else ""))
    return EXIT_OK


def _cmd_analyze(args) -> int:
    from .accuracy.stage import analyze, analyze_accuracy
    from .config.scenario import load_scenario, parse_overrides
    from .data import load_data
    from .model.loading import load_traced
    from .report.text import render_accuracy, render_analysis
    from .results import check_output_dir, save_analysis

    sc = load_scenario(args.scenario, parse_overrides(args.set))
    if args.output is not None:  # before the work, not after it
        check_output_dir(args.output, sc, field="-o")
    tm = load_traced(sc)
    progress = not args.quiet and sys.stderr.isatty()
    ds = load_data(sc, tm.input_shape, tm.output_width)
    res = analyze(sc, tm, ds, progress=progress)
    print(render_analysis(sc, res, tm.input_shape))
    acc = None
    if args.accuracy:
        acc = analyze_accuracy(sc, tm, res, ds, progress=progress)
        print(render_accuracy(acc, sc.bottleneck.coder))
    if args.output is not None:
        folder = save_analysis(sc, res, args.output, accuracy=acc)
        files = "cui.csv, cui_per_image.parquet, cui_per_class.csv, nominations.json, cui.png"
        if acc is not None:
            files += ", accuracy.csv, accuracy_summary.json, accuracy.png"
        print(f"\nwrote {folder}/ ({files})")
    return EXIT_OK


def _cmd_splits(args) -> int:
    from .model.loading import default_input_shape, load_model
    from .model.cost import profile_model
    from .report.text import render_profile
    from .model.splits import normalize_input_shape, trace

    try:
        model = load_model(args.model, args.weights, args.num_classes)
    except UserError as e:  # name the command-line argument, not the scenario field
        arg = "--weights" if e.field == "model.weights" else "--num-classes" if e.field == "model.num_classes" else "MODEL"
        raise UserError(e.message, source="splits", field=arg) from None
    try:
        shape = normalize_input_shape(args.input) if args.input else default_input_shape(args.model, model)
    except UserError as e:
        raise e.at(source="splits", field="--input") from None
    if shape is None:
        raise UserError("required for user models (e.g. --input 3x224x224)", source="splits", field="--input")
    try:
        tm = trace(model, shape)
    except UserError as e:
        raise UserError(e.message, source="splits", field="--input" if e.field else None) from None
    prof = profile_model(tm)
    if args.csv:
        prof.to_csv(sys.stdout, index_label="split")
        return EXIT_OK
    total = prof["head_flops"].iloc[-1]
    print(f"{args.model} at {'x'.join(map(str, shape))}: {len(prof)} candidate splits, "
          f"{total / 1e9:.3f} GFLOPs (1 FLOP = 1 multiply-add, fvcore)")
    print(render_profile(prof))
    return EXIT_OK


def _cmd_calibrate(args) -> int:
    from pathlib import Path

    from .atomic import check_writable_file
    from .calibrate import calibrate, check_model_names, default_name, render_calibration, write_profile

    models = [m for arg in args.models for m in arg.split(",") if m]
    holdout = [m for arg in args.holdout for m in arg.split(",") if m]
    check_model_names(models, holdout)  # before minutes of measuring
    out = Path(args.output) if args.output else None
    name = args.name or (out.stem if out else default_name())
    if out is None:
        out = Path(f"{name}.yaml")
    if out.stem != name:  # the registry requires it
        raise UserError(f"profile name {name!r} must equal the file stem of -o {out.name!r}",
                        source="calibrate", field="--name")
    check_writable_file(out, field="-o" if args.output else None)  # before minutes of measuring
    cal = calibrate(models, holdout, input_shape=args.input, name=name, kind=args.kind, repeats=args.repeats,
                    warmup=args.warmup, peak_gflops=args.peak_gflops, idle_w=args.idle_w, active_w=args.active_w,
                    threads=args.threads)
    print(render_calibration(cal))
    path = write_profile(cal.data, out)
    print(f"\nwrote {path} ({cal.seconds:.0f} s); use it from profiles/devices/ or a folder named in "
          "$SPLITIMPERA_PROFILES (as <folder>/devices/" + path.name + ")")
    return EXIT_OK


def _cmd_bottlenecks(args) -> int:
    from .accuracy.bottlenecks import get_bottleneck, list_bottlenecks

    names = list_bottlenecks(args.include)
    if not names:
        raise UserError(f"no bottleneck matches {args.include!r} (see `splitimpera bottlenecks`)", source="bottlenecks",
                        field="--include")
    width = max((len(n) for n in names), default=4)
    for n in names:
        b = get_bottleneck(n)
        learns = "  (fitted per split on calibration data)" if b.needs_fit else ""
        print(f"  {n:<{width}}  {b.describe()}{learns}")
    print("also parametric: int<1-8>[_channel][_pct], top<1-100>_gradcam|random; coders: raw, zstd, rle")
    return EXIT_OK


def _cmd_profiles(args) -> int:
    from .config.hardware import get_device, get_network, list_devices, list_networks

    kinds = [k for k in ("devices", "networks") if args.kind in (None, k)]
    if args.include and not any((list_devices if k == "devices" else list_networks)(args.include) for k in kinds):
        raise UserError(f"no {' or '.join(k[:-1] for k in kinds)} profile matches {args.include!r} "
                        "(see `splitimpera profiles`)", source="profiles", field="--include")
    if "devices" in kinds and list_devices(args.include):
        print("devices:")
        for n in list_devices(args.include):
            d = get_device(n)
            eff = d.compute.peak_gflops * d.compute.efficiency.conv
            print(f"  {n:<18} {d.kind:<7} {eff:8.1f} GFLOP/s conv  {d.memory.capacity_gb:6.1f} GB  "
                  f"{d.power.active_w:6.1f} W  {d.description.splitlines()[0][:60] if d.description else ''}")
    if "networks" in kinds and list_networks(args.include):
        print("networks:")
        for n in list_networks(args.include):
            p = get_network(n)
            print(f"  {n:<12} up {p.uplink_mbps:8.2f} Mbit/s  down {p.downlink_mbps:8.2f} Mbit/s  "
                  f"RTT {p.rtt_ms:6.1f} ms  loss {p.loss:.3%}")
    return EXIT_OK


def dashboard_command(port: int | None = None, headless: str | None = None) -> list[str]:
    """The ``streamlit run <package>/dashboard/app.py`` command line that ``splitimpera dashboard`` runs."""
    from pathlib import Path

    app = Path(__file__).resolve().parent / "dashboard" / "app.py"
    if not app.is_file():
        raise UserError(f"the dashboard script is missing: {app} (reinstall splitimpera)", source="dashboard")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.fileWatcherType", "none"]
    if port is not None:
        cmd += ["--server.port", str(port)]
    if headless is not None:
        cmd += ["--server.headless", headless]
    return cmd


def _cmd_dashboard(args) -> int:
    import importlib.util
    import os

    cmd = dashboard_command(args.port, args.headless)
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("streamlit is not installed (pip install streamlit)", source="dashboard")
    sys.stdout.flush()
    # Replace this process: Ctrl-C and kill reach Streamlit itself, and its exit code is ours.
    os.execv(cmd[0], cmd)
    return EXIT_OK  # not reached


def _cap_threads(args) -> None:
    """``--threads N`` (or ``$SPLITIMPERA_THREADS``): torch's CPU threads at most N."""
    if not hasattr(args, "threads"):
        return
    import os

    raw, field = (args.threads, "--threads") if args.threads is not None else (os.environ.get(THREADS_ENV), THREADS_ENV)
    if raw is None or raw == "":
        return
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"must be a whole number of at least 1 (got {raw!r})", source=args.command, field=field)
    args.threads = n
    import torch

    torch.set_num_threads(n)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="splitimpera", description="Design-space simulator for split computing: where to cut "
                "a DNN, on which device, over which link.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("simulate", help="run the pipeline on a scenario and rank every split",
                       description="Run the whole pipeline on SCENARIO and print the ranked splits.")
    s.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file, or a bundled scenario's name (e.g. demo)")
    s.add_argument("-o", "--output", metavar="DIR",
                   help="write splits.csv, result.json and the resolved scenario to DIR/<name>/")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a scenario field by its dotted key (repeatable), e.g. network.uplink_mbps=5")
    s.add_argument("--top", type=int, default=None, help="rows to show (default: output.top)")
    s.add_argument("--strict", action="store_true", help="exit with code 3 when no split meets the QoS")
    s.add_argument("--report", action="store_true", help="also write report.html (needs -o)")
    s.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("report", help="self-contained HTML report over result folders",
                       description="Write one self-contained HTML report (plots embedded, opens offline) over "
                                   "one or more result folders written by `simulate -o` (and `analyze -o`). "
                                   "A DIR holding result folders (the DIR given to `simulate -o`) stands for "
                                   "all of them, sorted by name.")
    s.add_argument("dirs", nargs="+", metavar="DIR",
                   help="result folder(s), e.g. results/demo, or a folder of them, e.g. results")
    s.add_argument("-o", "--output", metavar="FILE", default="report.html", help="HTML file (default report.html)")
    s.add_argument("--title", default=None)
    s.add_argument("--png", action="store_true", help="also write the plots as PNG files beside the report")
    s.set_defaults(func=_cmd_report)

    s = sub.add_parser("analyze", help="I-SPLIT importance (CUI curve, nominations) and accuracy × bytes under "
                                       "bottlenecks",
                       description="Compute the CUI curve of SCENARIO's model on its data, nominate splits, "
                                   "and find the best split per class (settings: analysis.cui). Then measure "
                                   "accuracy and bytes on the wire at every split under every bottleneck "
                                   "(settings: bottleneck.measure, bottleneck.splits), and validate the CUI curve "
                                   "as a predictor of that accuracy (leave-one-out).")
    s.add_argument("--no-accuracy", dest="accuracy", action="store_false",
                   help="only the importance analysis: skip measuring accuracy under bottlenecks")
    s.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file, or a bundled scenario's name (e.g. demo)")
    s.add_argument("-o", "--output", metavar="DIR", help="write cui.csv, cui_per_image.parquet, "
                   "cui_per_class.csv, nominations.json and cui.png to DIR/<name>/")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a scenario field, e.g. analysis.cui.classes=[3,5,8]")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    s.set_defaults(func=_cmd_analyze)

    s = sub.add_parser("bottlenecks", help="list the bottlenecks a scenario can put on the sent tensor",
                       description="List the registered bottlenecks (bottleneck.name, bottleneck.measure).")
    s.add_argument("--include", metavar="GLOB", help="only names matching, e.g. 'int4*'")
    s.set_defaults(func=_cmd_bottlenecks)

    s = sub.add_parser("splits", help="list a model's candidate splits with FLOPs and bytes",
                       description="List the candidate splits of MODEL (torchvision name, zoo name, or "
                                   "package.module:function).")
    s.add_argument("model", metavar="MODEL")
    s.add_argument("--input", metavar="CxHxW", help="per-sample input shape, e.g. 3x224x224")
    s.add_argument("--weights", default="none", help="none (default), default, or a state-dict path")
    s.add_argument("--num-classes", type=int, default=None)
    s.add_argument("--csv", action="store_true", help="print the full profile as CSV")
    s.set_defaults(func=_cmd_splits)

    from .calibrate import (DEFAULT_FIT_MODELS, DEFAULT_HOLDOUT_MODELS, DEFAULT_INPUT_SHAPE, DEFAULT_REPEATS,
                             DEFAULT_WARMUP)

    s = sub.add_parser("calibrate", help="measure this machine layer by layer and write a device profile",
                       description="Time every layer of a few torchvision models (random weights, fp32, batch 1, "
                                   "CPU), fit the per-layer roofline (efficiency per op class, per-layer overhead, "
                                   "memory bandwidth), print its error on held-out models and write a device "
                                   "profile YAML.")
    s.add_argument("-o", "--output", metavar="FILE", help="profile YAML to write (default: NAME.yaml)")
    s.add_argument("--models", nargs="+", default=list(DEFAULT_FIT_MODELS), metavar="MODEL",
                   help=f"models to fit on (default: {' '.join(DEFAULT_FIT_MODELS)})")
    s.add_argument("--holdout", nargs="*", default=list(DEFAULT_HOLDOUT_MODELS), metavar="MODEL",
                   help=f"models to check the fit on, never fitted (default: {' '.join(DEFAULT_HOLDOUT_MODELS)})")
    s.add_argument("--name", help="profile name (default: the stem of -o, else calibrated_<hostname>)")
    s.add_argument("--kind", choices=["device", "server"], default="device")
    shape = "x".join(map(str, DEFAULT_INPUT_SHAPE))
    s.add_argument("--input", default=shape, metavar="CxHxW", help=f"input shape of every model (default: {shape})")
    s.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help=f"timed runs per model, median taken (default: {DEFAULT_REPEATS})")
    s.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed runs first (default: {DEFAULT_WARMUP})")
    s.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    s.add_argument("--peak-gflops", type=float, default=None,
                   help="fp32 peak, 2 FLOP per multiply-add (default: measured with a large matmul)")
    s.add_argument("--idle-w", type=float, default=None, help="idle power, W (default: placeholder, marked estimate)")
    s.add_argument("--active-w", type=float, default=None,
                   help="active power, W (default: placeholder, marked estimate)")
    s.set_defaults(func=_cmd_calibrate)

    s = sub.add_parser("profiles", help="list device and network profiles",
                       description="List the device and network profiles.")
    s.add_argument("kind", nargs="?", choices=["devices", "networks"])
    s.add_argument("--include", default=None, help="glob filter, e.g. 'jetson*'")
    s.set_defaults(func=_cmd_profiles)

    s = sub.add_parser("dashboard", help="the Streamlit what-if dashboard (splitimpera/dashboard/app.py)",
                       description="Start the what-if dashboard: `streamlit run` on splitimpera/dashboard/app.py "
                                   "(the repo's app.py runs the same) with the file watcher off. "
                                   "Pick or upload a scenario, move the controls, see the ranking change.")
    s.add_argument("--server.port", "--port", dest="port", type=int, default=None, metavar="PORT",
                   help="port to serve on (default: Streamlit's, 8501)")
    s.add_argument("--server.headless", "--headless", dest="headless", nargs="?", const="true", default=None,
                   choices=["true", "false"], help="do not open a browser (true when given alone)")
    s.set_defaults(func=_cmd_dashboard)
    return p


def main(argv: list[str] | None = None) -> int:
    # fvcore.nn imports torch.jit.script, deprecated in recent torch: noise for our users.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        _cap_threads(args)
        return args.func(args)
    except UserError as e:
        print(f"error: {e.line()}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
