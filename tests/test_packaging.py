"""Profiles, ready scenarios and the dashboard ship as package data.

The fast tests load a bundled scenario by name; the slow one builds the project into a fresh
virtual environment (non-editable, no downloads: the dependencies come from this venv through
a ``.pth`` line) and runs the installed ``splitimpera`` from an unrelated folder.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from splitimpera.cli import main
from splitimpera.config.scenario import SCENARIOS_DIR, list_scenarios

PKG = Path(__file__).resolve().parent.parent / "splitimpera"


def _profile_names(root: Path) -> dict[str, list[str]]:
    return {kind: sorted(p.stem for p in (root / "config/profiles" / kind).glob("*.yaml"))
            for kind in ("devices", "networks")}


def test_repo_paths_link_to_the_package_data(repo_root):
    assert (repo_root / "profiles").resolve() == PKG / "config/profiles"
    assert (repo_root / "scenarios").resolve() == PKG / "scenarios" == SCENARIOS_DIR
    assert "demo" in list_scenarios() and "lte_drive" in list_scenarios()
    names = _profile_names(PKG)
    assert "rpi4" in names["devices"] and "lte_drive" in names["networks"]


def test_simulate_a_bundled_scenario_by_name(repo_root, tmp_path, monkeypatch, capsys):
    (tmp_path / "by_path").mkdir()
    assert main(["simulate", str(repo_root / "scenarios/demo.yaml"), "-o", str(tmp_path / "by_path")]) == 0
    work = tmp_path / "elsewhere"
    (work / "demo").mkdir(parents=True)  # a folder named like the scenario (e.g. from `-o .`) does not hide it
    monkeypatch.chdir(work)
    assert main(["simulate", "demo", "-o", "out"]) == 0
    by_name, by_path = work / "out/demo", tmp_path / "by_path/demo"
    for f in ("splits.csv", "result.json", "scenario.yaml"):
        assert (by_name / f).read_bytes() == (by_path / f).read_bytes(), f


def test_an_unknown_name_is_one_line_naming_the_bundled_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["simulate", "no_such_scenario"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no_such_scenario: file not found, nor a bundled scenario (demo, "), err
    assert "\n" not in err and all(n in err for n in list_scenarios())
    for path in ("no_such.yaml", "sub/demo"):  # a file name or a path is never looked up as a name
        assert main(["simulate", path]) == 2
        assert capsys.readouterr().err.strip() == f"error: {path}: file not found"


def test_simulate_help_mentions_bundled_names(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "bundled scenario" in " ".join(capsys.readouterr().out.split())


def _run(cmd, cwd, env, timeout=180):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r.stdout


@pytest.mark.slow
def test_non_editable_install_ships_profiles_and_scenarios(repo_root, tmp_path):
    import sysconfig

    # A copy of the sources: the build writes build/ and *.egg-info beside them.
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(repo_root / f, src / f)
    shutil.copytree(repo_root / "splitimpera", src / "splitimpera",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=60)
    py = fresh / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies (and pip, setuptools, wheel) from this venv; a plain path line does not run
    # the editable finder's .pth in there, so splitimpera must come from the fresh install.
    (site / "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPLITIMPERA_PROFILES", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed",
          str(src)], cwd=elsewhere, env=env)

    where = _run([py, "-c", "import splitimpera; print(splitimpera.__file__)"], cwd=elsewhere, env=env).strip()
    installed = Path(where).parent
    assert installed == site / "splitimpera", where

    # Every profile and scenario made it into the install.
    assert _profile_names(installed) == _profile_names(PKG)
    assert (installed / "config/profiles/networks/traces/lte_drive.csv").is_file()
    assert sorted(p.name for p in (installed / "scenarios").glob("*.yaml")) == \
        sorted(p.name for p in SCENARIOS_DIR.glob("*.yaml"))
    assert (installed / "dashboard/app.py").is_file()

    exe = fresh / "bin" / "splitimpera"
    out = _run([exe, "profiles"], cwd=elsewhere, env=env)
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    for kind, names in _profile_names(PKG).items():
        assert set(names) <= listed, (kind, sorted(set(names) - listed))

    _run([exe, "simulate", "demo", "-o", elsewhere / "results"], cwd=elsewhere, env=env)
    for f in ("splits.csv", "splits.parquet", "result.json", "scenario.yaml"):
        assert (elsewhere / "results/demo" / f).is_file(), f
    # A profile with a relative trace file resolves inside the install.
    _run([exe, "simulate", "lte_drive"], cwd=elsewhere, env=env)

    cmd = _run([py, "-c", "from splitimpera.cli import dashboard_command; print(dashboard_command()[4])"],
               cwd=elsewhere, env=env).strip()
    assert Path(cmd) == installed / "dashboard/app.py"
