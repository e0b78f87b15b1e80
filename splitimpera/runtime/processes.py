"""The real run's processes: ``serve`` and ``device`` children pinned to cores."""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

DEVICE_STARTUP_S = 20.0  # several device processes start their schedules together this long after launch


def cpu_s(pid: int) -> float:
    """CPU seconds every thread of process ``pid`` has run so far (Linux schedstat, ns
    resolution); NaN where it cannot be read."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return total / 1e9


def pin(core_set):
    def pre():
        if core_set is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, core_set)
    return pre


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "splitimpera.cli", *map(str, args)]


class ServerProcess:
    """``splitimpera serve`` in a child process pinned to ``core``; ``stop()`` returns its counters."""

    def __init__(self, scenario_path: Path, splits: list[str], core: int | None, threads: int | None,
                 overrides: list[str], timeout_s: float = 180.0):
        args = ["serve", scenario_path, "--splits", *splits, "--bind", "127.0.0.1:0"]
        if threads:
            args += ["--threads", threads]
        for o in overrides:
            args += ["--set", o]
        # stderr to a file: nothing reads it during the run, and a full pipe would block the server.
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  preexec_fn=pin(None if core is None else {core}))
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        line = ""
        while time.monotonic() < deadline and self.p.poll() is None:
            if sel.select(timeout=0.5):
                line = self.p.stdout.readline()
                if line.startswith("listening on "):
                    break
        sel.close()
        if not line.startswith("listening on "):
            self.p.kill()
            self.p.wait()
            raise RuntimeError(f"the server did not start: {self._last_error()}")
        host, _, port = line.split()[-1].rpartition(":")
        self.address = f"{host}:{port}"

    def _last_error(self) -> str:
        self.err.seek(0)
        lines = self.err.read().strip().splitlines()
        return lines[-1] if lines else "no output"

    def stop(self) -> dict:
        self.p.send_signal(signal.SIGINT)
        try:
            out, _ = self.p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, _ = self.p.communicate()
        try:
            for line in out.splitlines():
                if line.startswith("stats "):
                    return json.loads(line[6:])
            log.warning("server gave no counters: %s", self._last_error())
            return {}
        finally:
            self.err.close()


def run_point(scenario_path: Path, address: str, split: str, bottleneck: str, devices: int, cores, threads,
               overrides: list[str], tmp: Path, timeout_s: float) -> pd.DataFrame:
    procs, files, errs = [], [], []
    # One time zero for every device (the monotonic clock is the machine's): far enough ahead
    # for each process to load torch and the model.
    start_at = time.monotonic_ns() + int((DEVICE_STARTUP_S if devices > 1 else 0) * 1e9)
    for k in range(devices):
        f = tmp / f"dev-{split}-{bottleneck}-{k}.parquet"
        args = ["device", scenario_path, "--server", address, "--split", split, "--bottleneck", bottleneck,
                "--device-id", k, "-o", f, "--quiet", "--same-clock"]
        if devices > 1:
            args += ["--start-at", start_at]
        if threads:
            args += ["--threads", threads]
        for o in overrides:
            args += ["--set", o]
        err = tmp / f"dev-{split}-{bottleneck}-{k}.err"
        with open(err, "w") as fh:
            procs.append(subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=fh, preexec_fn=pin(cores)))
        files.append(f)
        errs.append(err)
    parts = []
    try:
        deadline = time.monotonic() + timeout_s
        for p, f, err in zip(procs, files, errs):
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 1.0))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.returncode != 0 or not f.exists():
                lines = err.read_text().strip().splitlines()
                raise RuntimeError(f"device process for {split} · {bottleneck} failed ({p.returncode}): "
                                   f"{lines[-1] if lines else 'no output'}")
            parts.append(pd.read_parquet(f))
    finally:
        for p in procs:  # none is left running, pinned to the core, when one failed
            if p.poll() is None:
                p.kill()
                p.wait()
    return pd.concat(parts, ignore_index=True)
