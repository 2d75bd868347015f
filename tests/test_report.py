"""`hpcbench netbench`, `report` and `compare` end to end, and the HTML report as a browser shows it."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import read_records, run_cli

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "cpu-2core-vm"
MATPLOTLIB_BLUE = np.array([31, 119, 180]) / 255  # the first line colour of every plot


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, every_workload_runs) -> Path:
    """Every workload on 1 and 2 processes and a netbench, all measured here: one system, so the
    communication model may set this machine's busbw beside these runs (never beside another machine's)."""
    results = tmp_path_factory.mktemp("results")
    shutil.copytree(every_workload_runs, results, dirs_exist_ok=True)  # the session's runs stay as measured
    bench = run_cli("netbench", "--nproc", "2", "--sizes", "1024,65536,1048576", "--iters", "3", "--out", str(results))
    assert bench.returncode == 0, bench.stderr
    out = tmp_path_factory.mktemp("report")
    result = run_cli("report", str(results), "-o", str(out), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(out / name) for name in ("scaling.csv", "report.md", "report.html")]
    return out


def test_report_files(report_dir):
    table = pd.read_csv(report_dir / "scaling.csv")
    assert {"efficiency", "ci95_low", "ci95_high", "karp_flatt", "baseline_runs", "mode"} <= set(table.columns)
    assert set(table["workload"]) == {"mlp", "cnn", "finetune", "vae", "rnn", "rl"}
    markdown = (report_dir / "report.md").read_text()
    assert "## Amdahl fit (predictions)" in markdown and "## Communication: exposed (measured)" in markdown
    assert "allreduce_bound_s" in markdown and "exposed_comm_s" in markdown and "| cnn |" in markdown
    assert "### Stragglers" in markdown
    assert table["exposed_comm_s"].notna().all() and table["compute_step_time_s"].notna().all()
    for name in ("throughput", "efficiency", "step_breakdown", "step_times_per_rank", "busbw"):
        assert (report_dir / "plots" / f"{name}.png").stat().st_size > 10_000
        assert (report_dir / "plots" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    page = (report_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 5
    assert "src=\"http" not in page and "src=\"plots/" not in page  # self-contained


@pytest.mark.browser
def test_report_renders_its_plots_in_headless_chromium(report_dir, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("headless Chromium not installed (Debian package chromium; .ci/run installs it)")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1400,2400", (report_dir / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    blue = np.all(np.abs(pixels - MATPLOTLIB_BLUE) < 0.06, axis=-1)
    # Plot lines and markers, not text: a page with broken images has no such pixels at all.
    assert blue.mean() > 0.001, f"only {blue.mean():.5f} of the screenshot is plot-line blue"
    rows_with_blue = np.flatnonzero(blue.any(axis=1))
    assert rows_with_blue.max() - rows_with_blue.min() > 800, "expected several plots down the page"


def test_compare_exits_1_on_a_regression(tmp_path):
    baseline, new = tmp_path / "baseline", tmp_path / "new"
    shutil.copytree(REFERENCE, baseline)
    shutil.copytree(REFERENCE, new)
    slowed = next(new.glob("mlp_ddp_2p_*.json"))
    record = json.loads(slowed.read_text())
    record["metrics"]["samples_per_s"] *= 0.9
    slowed.write_text(json.dumps(record))
    same = run_cli("compare", str(baseline), str(baseline), "--tolerance", "5%", timeout=60)
    assert same.returncode == 0, same.stderr
    worse = run_cli("compare", str(baseline), str(new), "--tolerance", "5%", timeout=60)
    assert worse.returncode == 1
    assert "1 of 12 configuration(s) regressed by more than 5.0%" in worse.stdout
    assert run_cli("compare", str(baseline), str(new), "--tolerance", "15%", timeout=60).returncode == 0
