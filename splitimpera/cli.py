"""Command-line interface: a thin shell over the public API.

Exit codes: 0 success, 2 bad user input (one line naming the file and the field), 1 internal
error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings

from .errors import UserError, first_line

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2
THREADS_ENV = "SPLITIMPERA_THREADS"
THREADS_HELP = (f"torch CPU threads at most (default: ${THREADS_ENV}, else torch's default, one per core; on a busy "
                "machine a one-line note suggests fewer, the count is never changed for you)")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        raise UserError(message, source=self.prog)


def _positive(args, command: str, *names: str) -> None:
    """One line, exit 2, for an integer option given as 0 or less."""
    for name in names:
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"must be at least 1 (got {v})", source=command, field="--" + name.replace("_", "-"))


def _cmd_simulate(args) -> int:
    from .pipeline import run
    from .report.term import fit
    from .report.text import render_result
    from .config.scenario import load_scenario, parse_overrides
    from .results.outputs import check_output_dir

    _positive(args, "simulate", "top")
    if args.report and args.output is None:
        raise UserError("needs -o DIR (the report is written beside the results)", source="simulate",
                        field="--report")
    sc = load_scenario(args.scenario, parse_overrides(args.set))
    if args.output is not None:  # before the work, not after it
        check_output_dir(args.output, sc, field="-o")
    from .stages import reporting

    busy = _busy_note(args)
    with reporting(_stage_reporter):
        res = run(sc, progress=_sim_progress)
    print(fit(render_result(res, top=args.top)))
    if args.output is not None:
        folder = res.save(args.output)
        files = "splits.csv, splits.parquet, result.json, scenario.yaml" + (", requests.parquet" if res.sim is not None else "")
        if args.report:
            from .report.html import write_report

            write_report([folder], folder / "report.html")
            files += ", report.html"
        print(fit(f"\nwrote {folder}/ ({files})"))
    _warn_if_busy(busy)
    return EXIT_OK if res.recommended is not None or not args.strict else 3


def _sim_progress(size):
    """Before a simulation: its size on stderr when it is long, and a progress bar on a terminal."""
    if size.seconds >= 5:
        print(f"simulating {size.text()}", file=sys.stderr, flush=True)
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=size.total, desc="simulating", unit="req", unit_scale=True, leave=False, file=sys.stderr)


def _busy_note(args) -> str | None:
    """A note when other work keeps the cores busy and torch's default thread count (one per
    core) contends with it: fewer threads are then often faster (two CPU hogs on two cores made
    ``simulate`` half again as slow at 2 threads as at 1). Read before the work (the load
    average would count the run itself) and printed after it (:func:`_warn_if_busy`), so that
    an error stays one line. The count itself is left alone: it is the user's to set
    (``--threads``, ``$SPLITIMPERA_THREADS``), and a result must not depend on the load."""
    import math
    import os

    if getattr(args, "threads", None) is not None:  # set by --threads or $SPLITIMPERA_THREADS
        return None
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average (Windows)
        return None
    import torch

    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    idle = cores - load
    if threads > 1 and idle < threads - 0.5:
        fewer = max(1, min(threads - 1, math.floor(idle + 0.5)))
        return (f"note: this machine was busy (load {load:.1f} on {cores} core{'s' if cores > 1 else ''}), and "
                f"torch's {threads} threads wait on each other: --threads {fewer} (or ${THREADS_ENV}={fewer}) is often "
                "faster here")
    return None


def _warn_if_busy(note: str | None) -> None:
    """:func:`_busy_note`'s line on stderr, when there is one and stderr is a terminal: a log
    (and a script reading stderr) gets the same lines whatever the load."""
    if note and sys.stderr.isatty():
        print(note, file=sys.stderr, flush=True)


def _stage_reporter(text: str, total: int | None, unit: str):
    """A heavy stage (:mod:`splitimpera.stages`) on stderr: on a terminal a progress bar with
    its time estimate; elsewhere (a log) one plain line, no bar and no carriage return."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=text, unit=unit, leave=False, file=sys.stderr)
    return _StageLine(text, total, unit)


class _StageLine:
    """One line per stage for a log: written after the first of several steps, with the time
    the whole stage will take at that pace, else when the stage ends, with the time it took."""

    def __init__(self, text: str, total: int | None, unit: str):
        import time

        self.text, self.total, self.unit = text, total, unit
        self.start, self.done, self.said = time.monotonic(), 0, False

    def _elapsed(self) -> float:
        import time

        return time.monotonic() - self.start

    def _say(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        self.said = True

    def update(self, n: int = 1) -> None:
        from .plain import human

        self.done += n
        if not self.said and self.total and self.done < self.total:
            per = self._elapsed() / self.done
            self._say(f"{self.text}: about {human(per * self.total, 's', 2)} ({human(per, 's', 2)} per {self.unit})")

    def close(self) -> None:
        from .plain import human

        if not self.said:
            self._say(f"{self.text}: {human(self._elapsed(), 's', 2)}")


def _cmd_report(args) -> int:
    from pathlib import Path

    from .atomic import check_writable_dir, check_writable_file
    from .report.html import write_report

    if args.output is None:
        one = Path(args.dirs[0])
        args.output = str(one / "report.html") if len(args.dirs) == 1 and one.is_dir() else "report.html"
    check_writable_file(args.output, field="-o")
    from .report.sweep import write_sweep_report
    from .results.sweep import is_sweep_dir

    if any(is_sweep_dir(d) for d in args.dirs):
        if len(args.dirs) > 1:
            raise UserError("a sweep folder is reported on its own", source="report", field="DIR")
        out = write_sweep_report(args.dirs[0], args.output, x=args.x, y=args.y, fix=args.fix, title=args.title)
        print(f"wrote {out}")
        return EXIT_OK
    if args.png:
        out = Path(args.output)
        check_writable_dir(out.parent / f"{out.stem}_figures", field="--png")
    out = write_report(args.dirs, args.output, title=args.title, png=args.png).resolve()
    print(f"wrote {out}" + (f" and {out.parent / (out.stem + '_figures')}/" if args.png else ""))
    return EXIT_OK


def _cmd_analyze(args) -> int:
    from .accuracy.design_points import analyze, analyze_accuracy
    from .config.scenario import load_scenario, parse_overrides
    from .data import load_data
    from .model.loading import load_traced
    from .report.term import fit
    from .report.text import render_accuracy, render_analysis
    from .report.analysis import save_analysis
    from .results.outputs import check_output_dir

    sc = load_scenario(args.scenario, parse_overrides(args.set))
    if args.output is not None:  # before the work, not after it
        check_output_dir(args.output, sc, field="-o")
    tm = load_traced(sc)
    progress = not args.quiet and sys.stderr.isatty()
    from .stages import reporting

    busy = _busy_note(args)
    ds = load_data(sc, tm.input_shape, tm.output_width)
    # On a terminal the stages draw their own bars; in a log, one line per stage.
    with reporting(None if args.quiet or progress else _stage_reporter):
        res = analyze(sc, tm, ds, progress=progress)
    print(fit(render_analysis(sc, res, tm.input_shape)))
    acc = None
    if args.accuracy:
        with reporting(None if args.quiet or progress else _stage_reporter):
            acc = analyze_accuracy(sc, tm, res, ds, progress=progress)
        print(fit(render_accuracy(acc, sc.bottleneck.coder)))
    if args.output is not None:
        folder = save_analysis(sc, res, args.output, accuracy=acc)
        files = "cui.csv, cui_per_image.parquet, cui_per_class.csv, nominations.json, cui.png"
        if acc is not None:
            files += ", accuracy.csv, accuracy_summary.json, accuracy.png"
        print(fit(f"\nwrote {folder}/ ({files})"))
    _warn_if_busy(busy)
    return EXIT_OK


def _cmd_splits(args) -> int:
    from .model.loading import default_input_shape, load_model, trace_at
    from .model.cost import profile_model
    from .report.text import render_profile
    from .model.splits import normalize_input_shape

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
        tm = trace_at(args.model, model, shape)
    except UserError as e:
        raise UserError(e.message, source="splits", field="--input" if e.field or args.input else None) from None
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
    from .calibrate import (DEFAULT_INPUT_SHAPE, calibrate, check_model_names, implausible, once, profile_output,
                            render_calibration, write_profile)

    if args.for_model is not None:
        return _calibrate_for_model(args)
    if args.profile is not None or args.num_classes is not None:
        raise UserError("belongs to --for-model (the base profile, the model's classes); without --for-model "
                        "calibrate fits a new profile", source="calibrate",
                        field="--profile" if args.profile is not None else "--num-classes")
    models = [m for arg in args.models for m in arg.split(",") if m]
    holdout = [m for arg in args.holdout for m in arg.split(",") if m]
    check_model_names(models, holdout)  # before minutes of timing
    name, out = profile_output(args.name, args.output)
    with _said_once(logging.getLogger("splitimpera.calibrate")) as said:
        cal = calibrate(models, holdout, input_shape=args.input or DEFAULT_INPUT_SHAPE, name=name, kind=args.kind,
                        repeats=args.repeats, warmup=args.warmup, peak_gflops=args.peak_gflops, idle_w=args.idle_w,
                        active_w=args.active_w, threads=args.threads)
    said(skip=cal.notes)  # the notes are printed below, with the fit
    print(render_calibration(cal))
    for line in once(implausible(cal.data)):
        print(f"check: {line}")
    path = write_profile(cal.data, out, table=cal.table)
    side = f" and its residual table {path.with_name(path.stem + '.nodes.csv')}" if cal.table is not None else ""
    print(f"\nwrote {path}{side} ({cal.seconds:.0f} s); use {'them' if side else 'it'} from profiles/devices/ or a "
          "folder named in $SPLITIMPERA_PROFILES (as <folder>/devices/" + path.name + ")")
    return EXIT_OK


def _calibrate_for_model(args) -> int:
    """``calibrate --for-model``: time one model node by node, add the table to a device profile."""
    from pathlib import Path

    from .calibrate import (DEFAULT_FIT_MODELS, DEFAULT_HOLDOUT_MODELS, plan_timing_profile, profile_with_timing,
                            time_model, write_timing_profile)

    fit_only = {"--models": args.models != list(DEFAULT_FIT_MODELS),
                "--holdout": args.holdout != list(DEFAULT_HOLDOUT_MODELS), "--kind": args.kind != "device",
                "--peak-gflops": args.peak_gflops is not None, "--idle-w": args.idle_w is not None,
                "--active-w": args.active_w is not None}
    plan = plan_timing_profile(args.for_model, args.profile, args.output, args.name,
                               fit_options=[k for k, v in fit_only.items() if v])
    timing = time_model(args.for_model, args.input, num_classes=args.num_classes, repeats=args.repeats,
                        warmup=args.warmup, threads=args.threads, search_dir=Path.cwd())
    data, table_path = profile_with_timing(plan.base, timing, name=plan.name, out=plan.out, base_dir=plan.base_dir)
    t = timing.table
    print(f"{timing.model} at {timing.input}: {int((t['raw_s'] > 0).sum())} nodes timed, plain forward "
          f"{timing.total_s * 1e3:.4g} ms (nodes sum to {t['raw_s'].sum() * 1e3:.4g} ms before scaling), run-to-run "
          f"spread {timing.noise * 100:.2g} %, {timing.threads} thread{'s' if timing.threads != 1 else ''}")
    by_kind = t.groupby("kind")["measured_s"].sum().sort_values(ascending=False)
    print("time by op kind: " + ", ".join(f"{k} {v * 1e3:.3g} ms" for k, v in by_kind.items() if v > 0))
    write_timing_profile(data, plan.out, timing, table_path)
    print(f"wrote {table_path} and {plan.out}: `simulate` uses the table (measured mode) whenever this profile runs "
          f"{timing.model} at {timing.input}")
    return EXIT_OK


@contextlib.contextmanager
def _said_once(logger: logging.Logger):
    """Hold ``logger``'s records (and Python warnings, each once) while the block runs; the
    yielded ``said(skip=…)`` then logs each distinct message once, leaving out those in ``skip``."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False

    def said(skip=()):
        seen = set(skip)
        root = logging.getLogger()
        for r in records:
            msg = r.getMessage()
            if msg not in seen and r.levelno >= root.getEffectiveLevel():
                seen.add(msg)
                root.handle(r)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("once")
            yield said
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _cmd_sweep(args) -> int:
    import os

    from .report.sweep import render_sweep
    from .sweep import load_sweep, sweep

    if args.workers is not None and args.workers < 0:
        raise UserError("must be 0 (in this process) or more", source="sweep", field="--workers")
    if args.chunk is not None and args.chunk < 1:
        raise UserError("must be 1 or more", source="sweep", field="--chunk")
    workers = args.workers if args.workers is not None else os.cpu_count() or 1
    sw = load_sweep(args.sweep)
    out = args.output or sw.base_scenario.output.dir
    if not args.verbose:  # Dask sets its loggers to INFO: its scheduler's and nannies' lines are noise here
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
    client = None
    if args.scheduler:
        from distributed import Client

        try:
            client = Client(args.scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as e:
            raise UserError(f"cannot reach the Dask scheduler: {first_line(e)}", source="sweep",
                            field="--scheduler") from None
    try:
        res = sweep(sw, client, workers=workers,
                    out_dir=out, progress=not args.quiet and sys.stderr.isatty(), chunk_size=args.chunk)
    finally:
        if client is not None:
            client.close()
    print(render_sweep(res))
    return EXIT_OK if not (res.summary["status"] == "error").any() else EXIT_INTERNAL


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
    import textwrap

    from .config.profile_registry import get_device, get_network, list_devices, list_networks, warn_broken_profiles
    from .plain import human, num

    kinds = [k for k in ("devices", "networks") if args.kind in (None, k)]
    warn_broken_profiles()
    if args.include and not any((list_devices if k == "devices" else list_networks)(args.include) for k in kinds):
        raise UserError(f"no {' or '.join(k[:-1] for k in kinds)} profile matches {args.include!r} "
                        "(see `splitimpera profiles`)", source="profiles", field="--include")
    if "devices" in kinds and list_devices(args.include):
        rows = []
        for n in list_devices(args.include):
            d = get_device(n)
            c = d.compute
            model = ("per-kind" if c.kinds else "roofline") + (f" ±{c.error_pct:.2g}%" if c.error_pct is not None else "")
            model += f" +{len(c.timings)} table{'s' if len(c.timings) > 1 else ''}" if c.timings else ""
            desc = d.description.splitlines()[0] if d.description else ""
            rows.append([n, d.kind, num(d.macs_per_s("conv") / 1e9), human(d.memory_bytes, "B"),
                         human(d.power.active_w, "W"), model, textwrap.shorten(desc, 44, placeholder=" …")])
        print("devices (conv GFLOP/s: sustained on convolutions at 1 FLOP per multiply-add, as everywhere else; "
              "datasheets count 2):")
        _table(["name", "kind", "conv GFLOP/s", "memory", "active", "compute model", "description"], rows,
               right={2, 3, 4})
    if "networks" in kinds and list_networks(args.include):
        rows = []
        for n in list_networks(args.include):
            p = get_network(n)
            rows.append([n, human(p.uplink_bps, "bit/s"), human(p.downlink_bps, "bit/s"), human(p.rtt_s, "s"),
                         f"{num(p.loss * 100)} %", p.transport + (" + trace" if p.trace_csv else ""),
                         textwrap.shorten(p.description.splitlines()[0] if p.description else "", 44,
                                          placeholder=" …")])
        print("networks:")
        _table(["name", "uplink", "downlink", "RTT", "loss", "transport", "description"], rows, right={1, 2, 3, 4})
    return EXIT_OK


def _table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> None:
    """Rows under a header, columns aligned (``right``: right-aligned columns), indented two spaces."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        cells = [str(v).rjust(w) if i in right else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths))]
        print("  " + "  ".join(cells).rstrip())


def _token_from_args(args, command: str) -> str | None:
    from .runtime.auth import read_token

    if args.token is not None:
        raise UserError("a token on the command line shows in the process list: put it in a file (--token-file) "
                        "or $SPLITIMPERA_TOKEN", source=command, field="--token")
    try:
        return read_token(args.token_file)
    except UserError as e:
        raise e.at(source=command) from None


def _cmd_serve(args) -> int:
    import json
    import signal
    import threading

    from .config.scenario import load_scenario, parse_overrides
    from .runtime.device import parse_address
    from .runtime.server import SplitServer, unaccounted

    sc = load_scenario(args.scenario, parse_overrides(args.set))
    host, port = parse_address(args.bind, field="--bind")
    token = _token_from_args(args, "serve")
    if args.stats_every is not None and not args.stats_every > 0:
        raise UserError(f"must be > 0 (got {args.stats_every:g})", source="serve", field="--stats-every")
    splits = [s for arg in args.splits for s in arg.split(",") if s] or None
    srv = SplitServer(sc, splits, host=host, port=port, token=token, threads=args.threads)
    h, p = srv.start()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill → the same draining stop as Ctrl-C
    print(f"serving {len(srv.splits)} split(s) of {sc.model.name} ({', '.join(srv.bottlenecks)}, coder "
          f"{sc.bottleneck.coder}, {sc.workload.server_workers} worker(s), batches up to {sc.workload.max_batch})"
          + ("" if token else "; loopback only, no token"), file=sys.stderr)
    print(f"listening on {h}:{p}", flush=True)
    wake = threading.Event()
    try:
        while not wake.wait(args.stats_every):  # the counters while it runs, on stderr
            print("stats " + json.dumps(srv.counters(), sort_keys=True), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()  # drains first: queued requests are answered, new ones told "draining"
        print(serve_summary(srv.stats), flush=True)
        print("stats " + json.dumps(srv.counters(), sort_keys=True), flush=True)
        if unaccounted(srv.stats):
            print(f"warning: {unaccounted(srv.stats)} request(s) have no counted outcome", file=sys.stderr)
    return EXIT_OK


def serve_summary(stats) -> str:
    """What ``serve`` did, in words, for when it stops: requests, replies, connections, then
    each other counter (a reason a frame or connection was refused)."""
    def n(key: str, one: str, many: str) -> str:
        count = stats.get(key, 0)
        return f"{count} {one if count == 1 else many}"

    line = (f"stopped after {n('requests', 'request', 'requests')}, {n('replies', 'reply', 'replies')} over "
            f"{n('connections', 'connection', 'connections')}")
    other = {k: v for k, v in stats.items() if k not in ("requests", "replies", "connections") and v}

    if other:
        line += "; closed or refused: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(other.items()))
    return line


def _cmd_device(args) -> int:
    from pathlib import Path

    from .atomic import atomic_write, check_writable_file
    from .config.scenario import load_scenario, parse_overrides
    from .runtime.device import outcome_counts, parse_address, run_device

    _positive(args, "device", "requests")  # --threads: checked for every command by _cap_threads
    sc = load_scenario(args.scenario, parse_overrides(args.set))
    server = parse_address(args.server)
    if args.output:
        check_writable_file(args.output, field="-o")
    split = args.split or (sc.analysis.splits[0] if isinstance(sc.analysis.splits, list) else None)
    if split is None:
        raise UserError("name the split to run (or list one in analysis.splits)", source="device", field="--split")
    try:
        run = run_device(sc, server, split, bottleneck=args.bottleneck, device_id=args.device_id,
                         token=_token_from_args(args, "device"), threads=args.threads,
                         num_requests=args.requests, start_at_ns=args.start_at, same_clock=args.same_clock)
    except UserError as e:
        raise e.at(source="device") from None
    df = run.requests
    if args.output:
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write(Path(args.output), buf.getvalue())
    if not args.quiet:
        ok = df[df["answered"]]
        lat = ok["latency_s"]
        counts = outcome_counts(df)
        rest = ", ".join(f"{v} {k}" for k, v in counts.items() if k not in ("sent", "answered") and v)
        print(f"{split} · {df['bottleneck'].iloc[0]}: {len(ok)} of {len(df)} answered"
              + (f" ({rest})" if rest else "") + "; latency mean "
              f"{lat.mean() * 1e3:.3f} ms, p95 {lat.quantile(0.95) * 1e3:.3f} ms; device "
              f"{ok['device_compute_s'].mean() * 1e3:.3f} ms, uplink {ok['uplink_s'].mean() * 1e3:.3f} ms, "
              f"server wait {ok['server_wait_s'].mean() * 1e3:.3f} ms, server {ok['server_compute_s'].mean() * 1e3:.3f} "
              f"ms; clock offset {run.clock_offset_s * 1e6:.1f} µs (±{run.sync_rtt_s * 5e5:.1f})"
              + (f"; wrote {args.output}" if args.output else ""))
    return EXIT_OK  # requests without an answer are rows marked lost, not a failure of the command


def _cmd_measure(args) -> int:
    import os

    from .config.scenario import load_scenario, parse_overrides
    from .results.outputs import check_output_dir
    from .runtime import compare as m

    _positive(args, "measure", "requests")
    overrides = parse_overrides(args.set)
    if args.netns is not None and os.environ.get(m.NETNS_ENV) != "1":
        sc = load_scenario(args.scenario, overrides)  # bad input is reported before the namespace
        if args.output:
            check_output_dir(args.output, sc, field="-o")
        return m.reexec_in_netns(sys.argv[1:] if args.argv is None else args.argv)
    sc = load_scenario(args.scenario, overrides)
    if args.output:
        check_output_dir(args.output, sc, field="-o")
    splits = [s for arg in args.splits for s in arg.split(",") if s]
    bns = [b for arg in args.bottleneck for b in arg.split(",") if b]
    points = None
    if splits or bns:
        from .runtime.server import wire_bottlenecks

        bns = bns or list(wire_bottlenecks(sc))[:1]
        if not splits:
            from .model.loading import load_traced

            splits = [c.name for c in load_traced(sc).candidates]
        points = [(s, b) for s in splits for b in bns]
    cores = None
    if args.cores:
        try:
            d, s = (int(c) for c in args.cores.split(","))
        except ValueError:
            raise UserError(f"expected DEVICE,SERVER core numbers, got {args.cores!r}", source="measure",
                            field="--cores") from None
        cores = (d, s)
    if args.calibrate and args.profile:
        raise UserError("give --profile or --calibrate, not both", source="measure", field="--calibrate")
    if args.server_load is not None and not 0 < args.server_load < 1:
        raise UserError(f"must be in (0, 1) (got {args.server_load})", source="measure", field="--server-load")
    rate = None
    if args.netns is not None:
        rate = args.netns if args.netns > 0 else sc.network.uplink_mbps
    fid = m.measure(args.scenario, points, overrides=overrides, netns_rate_mbps=rate, server_load=args.server_load,
                    num_requests=args.requests, profile=args.profile, cores=cores, threads=args.threads,
                    calibrate=args.calibrate,
                    progress=None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True)))
    print(m.render(fid))
    if args.output:
        folder = m.save(fid, args.output)
        print(f"\nwrote {folder}/ (measured.parquet, simulated.parquet, fidelity.csv, fidelity.json, scenario.yaml)")
    return EXIT_OK


def dashboard_command(port: int | None = None, headless: str | None = None) -> list[str]:
    """The ``streamlit run <package>/dashboard/app.py`` command line that ``splitimpera dashboard`` runs."""
    from pathlib import Path

    app = Path(__file__).resolve().parent / "dashboard" / "app.py"
    if not app.is_file():
        raise UserError(f"the dashboard script is missing: {app} (reinstall splitimpera)", source="dashboard")
    # No Deploy button (a local what-if tool, nothing to deploy), no usage statistics sent.
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.fileWatcherType", "none",
           "--client.toolbarMode", "viewer", "--browser.gatherUsageStats", "false"]
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


def max_threads() -> int:
    """The most torch threads ``--threads`` may ask for: 4 per CPU (more only thrash, and far
    more exhaust the OpenMP runtime's memory)."""
    import os

    return 4 * (os.cpu_count() or 1)


def _cap_threads(args) -> int | None:
    """``--threads N`` (or ``$SPLITIMPERA_THREADS``): torch's CPU threads at most N. Returns the
    thread count before (None when unchanged), for :func:`main` to restore."""
    if not hasattr(args, "threads"):
        return None
    import os

    raw, field = (args.threads, "--threads") if args.threads is not None else (os.environ.get(THREADS_ENV), THREADS_ENV)
    if raw is None or raw == "":
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"must be a whole number of at least 1 (got {raw!r})", source=args.command, field=field)
    limit = max_threads()
    if n > limit:
        raise UserError(f"at most {limit} (4 per CPU; this machine has {os.cpu_count() or 1}; got {raw!r})",
                        source=args.command, field=field)
    args.threads = n
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="splitimpera", description="Design-space simulator for split computing: where to cut "
                "a DNN, on which device, over which link.")
    from ._version import __version__

    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    p.add_argument("--version", action="version", version=f"splitimpera {__version__}")
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
    s.add_argument("--report", action="store_true", help="also write DIR/<name>/report.html (needs -o)")
    s.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("report", help="self-contained HTML report over result folders",
                       description="Write one self-contained HTML report (plots embedded, opens offline) over "
                                   "one or more result folders written by `simulate -o` (and `analyze -o`). "
                                   "A DIR holding result folders (the DIR given to `simulate -o`) stands for "
                                   "all of them, sorted by name. A sweep folder (`sweep -o`) gets a sweep report: "
                                   "the recommended split as a heatmap over two axes, where the cut moves, the "
                                   "Pareto front across the sweep and the points where nothing meets the QoS.")
    s.add_argument("dirs", nargs="+", metavar="DIR",
                   help="result folder(s), e.g. results/demo, or a folder of them, e.g. results")
    s.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="HTML file (default: report.html inside DIR when one DIR is given, else in the current "
                        "folder)")
    s.add_argument("--title", default=None)
    s.add_argument("--png", action="store_true",
                   help="also write every plot as a PNG file into <FILE stem>_figures/ beside the report")
    s.add_argument("--x", metavar="AXIS", help="sweep folder: the heatmap's x axis (default: the first that varies)")
    s.add_argument("--y", metavar="AXIS", help="sweep folder: the heatmap's y axis (default: the next that varies)")
    s.add_argument("--fix", action="append", metavar="AXIS=VALUE", default=[],
                   help="sweep folder: hold another axis at a value (default: marginalised); repeatable")
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

    s = sub.add_parser("sweep", help="run a parameter sweep (sweep.yaml) in-process or on Dask",
                       description="Run every point of a sweep file (a base scenario and grid, zip and random axes "
                                   "over dotted keys) and write DIR/<name>/points.parquet (one row per point and "
                                   "design point) and summary.parquet/.csv (one row per point), as points finish: "
                                   "rerunning resumes. The heavy stages run once per model, data and bottleneck.")
    s.add_argument("sweep", metavar="SWEEP", help="sweep YAML file, e.g. scenarios/sweeps/demo_grid.yaml, or a bundled "
                   "sweep's name (e.g. demo_uplink)")
    s.add_argument("-o", "--output", metavar="DIR", help="results folder (default: the base scenario's output.dir)")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local Dask worker processes (default: one per core; 0: in this process, no Dask)")
    s.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on an existing Dask cluster")
    s.add_argument("--chunk", type=int, default=None, metavar="N", help="points per task (default: automatic)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar (there is none when stderr is not a "
                   "terminal)")
    s.set_defaults(func=_cmd_sweep)

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
                             DEFAULT_WARMUP, model_list)

    s = sub.add_parser("calibrate", help="measure this machine layer by layer and write a device profile",
                       description="Time every layer of a few torchvision models and seeded synthetic networks "
                                   "(random weights, fp32, batch 1, CPU), fit the per-kind compute model (and the "
                                   "per-layer roofline beside it), print every model's error on held-out models and "
                                   "write a device profile YAML with the one that predicted them best.")
    s.add_argument("-o", "--output", metavar="FILE", help="profile YAML to write (default: NAME.yaml)")
    s.add_argument("--models", nargs="+", default=list(DEFAULT_FIT_MODELS), metavar="MODEL",
                   help=f"models to fit on (default: {model_list(DEFAULT_FIT_MODELS)}; a synthetic network "
                        "is named splitimpera.model.synthnets:net_SEED)")
    s.add_argument("--holdout", nargs="*", default=list(DEFAULT_HOLDOUT_MODELS), metavar="MODEL",
                   help=f"models to check the fit on, never fitted (default: {' '.join(DEFAULT_HOLDOUT_MODELS)})")
    s.add_argument("--name", help="profile name (default: the stem of -o, else calibrated_<hostname>)")
    s.add_argument("--kind", choices=["device", "server"], default="device")
    shape = "x".join(map(str, DEFAULT_INPUT_SHAPE))
    s.add_argument("--input", default=None, metavar="CxHxW",
                   help=f"input shape of every model (default: {shape}; with --for-model: the model's own)")
    s.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help=f"timed runs per model, median taken (default: {DEFAULT_REPEATS})")
    s.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed runs first (default: {DEFAULT_WARMUP})")
    s.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    s.add_argument("--peak-gflops", type=float, default=None,
                   help="fp32 peak, 2 FLOP per multiply-add (default: measured with a large matmul)")
    s.add_argument("--idle-w", type=float, default=None, help="idle power, W (default: placeholder, marked estimate)")
    s.add_argument("--active-w", type=float, default=None,
                   help="active power, W (default: placeholder, marked estimate)")
    s.add_argument("--for-model", metavar="MODEL", default=None,
                   help="measured mode: time this model (zoo, torchvision or module:function) node by node and add "
                        "the table to the --profile's compute.timings; simulate then uses it for this model and input")
    s.add_argument("--profile", metavar="NAME|FILE", default=None,
                   help="with --for-model: the device profile this machine is (a file is updated in place unless -o)")
    s.add_argument("--num-classes", type=int, default=None, help="with --for-model: the model's classes")
    s.set_defaults(func=_cmd_calibrate)

    s = sub.add_parser("serve", help="the tail side of a real split run (listens on loopback by default)",
                       description="Load SCENARIO's model, build the exact tails of the splits, and answer "
                                   "frames from `splitimpera device` (binary, length-prefixed, never pickled) "
                                   "with dynamic batching as workload.max_batch/batch_timeout_ms say. Prints "
                                   "'listening on HOST:PORT'; Ctrl-C or SIGTERM drains it (queued requests are "
                                   "answered) and prints its counters. A token comes from --token-file or "
                                   "$SPLITIMPERA_TOKEN. No TLS: loopback or a trusted network only.")
    s.add_argument("scenario", metavar="SCENARIO")
    s.add_argument("--splits", nargs="+", default=[], metavar="SPLIT", help="splits to serve (default: all)")
    s.add_argument("--bind", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="address to listen on (default 127.0.0.1:0, a free port); not loopback needs a token. "
                        "No TLS: bind to loopback or a trusted network only")
    s.add_argument("--token-file", default=None, metavar="FILE",
                   help="file whose first line is the shared secret every frame must carry (at least 16 "
                        "characters); else $SPLITIMPERA_TOKEN. Never on the command line, where the process "
                        "list shows it")
    s.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused with the reason
    s.add_argument("--stats-every", type=float, default=None, metavar="SECONDS",
                   help="print the counters (a 'stats {...}' JSON line on stderr) every SECONDS while serving")
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[])
    s.set_defaults(func=_cmd_serve)

    s = sub.add_parser("device", help="the head side of a real split run: send the workload to a server",
                       description="Run the head of SPLIT on this machine with SCENARIO's arrivals, encode with "
                                   "its bottleneck and coder, send to `splitimpera serve`, and time every request "
                                   "(the columns of the simulation's per-request table).")
    s.add_argument("scenario", metavar="SCENARIO")
    s.add_argument("--server", required=True, metavar="HOST:PORT")
    s.add_argument("--split", default=None, help="split to run (default: the first of analysis.splits)")
    s.add_argument("--bottleneck", default=None, help="one of the scenario's bottlenecks (default: the first)")
    s.add_argument("--device-id", type=int, default=0, help="which device's arrival times (0..num_devices-1)")
    s.add_argument("--requests", type=int, default=None,
                   help="requests to send (default workload.num_requests; with Poisson arrivals another count "
                        "draws other arrival times than a simulation of the scenario: prefer --set "
                        "workload.num_requests=N)")
    s.add_argument("--token-file", default=None, metavar="FILE",
                   help="file whose first line is the server's token; else $SPLITIMPERA_TOKEN")
    s.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused with the reason
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--start-at", type=int, default=None, metavar="NS",
                   help="time zero of the schedule on this machine's monotonic clock, ns (devices started "
                        "together share it)")
    s.add_argument("--same-clock", action="store_true",
                   help="server on this machine: use its monotonic clock as is instead of estimating the offset")
    s.add_argument("-o", "--output", metavar="FILE", help="write the per-request table (Parquet)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[])
    s.set_defaults(func=_cmd_device)

    s = sub.add_parser("measure", help="run the split for real on this machine and compare with the simulation",
                       description="Time head and tail on pinned cores, run `serve` and `device` processes over "
                                   "real TCP (optionally in a private network namespace with the uplink shaped "
                                   "by tc tbf; no propagation delay: kernel netem is unavailable, so the "
                                   "simulated link has RTT 0), simulate the same arrivals, and report simulated "
                                   "vs measured latency per split and per component.")
    s.add_argument("scenario", metavar="SCENARIO")
    s.add_argument("-o", "--output", metavar="DIR", help="write measured.parquet, fidelity.csv … to DIR/<name>/")
    s.add_argument("--splits", nargs="+", default=[], metavar="SPLIT", help="splits to run (default: all)")
    s.add_argument("--bottleneck", nargs="+", default=[], metavar="NAME",
                   help="bottlenecks to run (default: the scenario's first)")
    s.add_argument("--netns", nargs="?", type=float, const=0.0, default=None, metavar="MBPS",
                   help="run in a private network namespace (root) with loopback shaped to MBPS "
                        "(default: the scenario's uplink_mbps)")
    s.add_argument("--server-load", type=float, default=None, metavar="RHO",
                   help="per split, the request rate that loads the server to RHO (0..1)")
    s.add_argument("--requests", type=int, default=None, help="requests per device (default workload.num_requests)")
    s.add_argument("--profile", default=None, metavar="DEVICE",
                   help="also simulate in predicted mode with this device profile on both sides "
                        "(e.g. one `calibrate` wrote for this machine)")
    s.add_argument("--calibrate", action="store_true",
                   help="first run `calibrate` on the device core and simulate in predicted mode with that profile")
    s.add_argument("--cores", default=None, metavar="DEV,SRV", help="cores to pin device and server to (default 0,1)")
    s.add_argument("--threads", type=int, default=1, help="torch threads per side (default 1)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", default=[])
    s.set_defaults(func=_cmd_measure, argv=None)

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
    threads_before = None
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        threads_before = _cap_threads(args)
        return args.func(args)
    except UserError as e:
        print(f"error: {e.line()}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    finally:  # main() called in a process that goes on (a notebook, the tests): its torch threads as they were
        if threads_before is not None:
            import torch

            torch.set_num_threads(threads_before)


if __name__ == "__main__":
    sys.exit(main())
