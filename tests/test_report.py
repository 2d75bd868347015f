"""Every workload under DDP on 2 gloo processes (a valid record, both ranks timed, identical replicas), then
`hpcbench netbench`, `report` and `compare` end to end over those runs, and the HTML report as a browser shows it.

One file: pytest-xdist runs a file in one process, so the runs of every workload are made once."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SMALL, SMALL_OPTIONS, read_records, run_cli
from hpcbench.workloads import registry

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "cpu-2core-vm"
MATPLOTLIB_BLUE = np.array([31, 119, 180]) / 255  # the first line colour of every plot


@pytest.fixture(scope="module")
def every_workload_runs(tmp_path_factory) -> Path:
    """Every workload on 2 processes, and mlp and cnn on 1 as well (the report's curves need a baseline;
    four more 1-process runs added ~45 s and no check), measured once and only read after: each
    2-process record is checked below, and the report is built from all of them. Two sweeps, not one a
    workload: each sweep's start costs seconds, and one sweep file holds every workload's small options."""
    results = tmp_path_factory.mktemp("every-workload")
    sweep = results.parent / f"{results.name}.toml"
    for workloads, counts in ((sorted(SMALL), [2]), (["cnn", "mlp"], [1])):
        options = [f"{workload}.{key} = {value!r}".replace("'", '"') for workload in workloads
                   for key, value in SMALL_OPTIONS.get(workload, {}).items()]
        sweep.write_text("\n".join([f"workloads = {workloads}".replace("'", '"'), f"nproc = {counts}", "batch_size = 8",
                                    "steps = 2", "warmup = 1", "repeats = 2", *options]) + "\n")
        # one thread a process in both sweeps, as one sweep over 1 and 2 processes would give: the 1-process runs
        # are the 2-process runs' baseline only at the same threads
        result = run_cli("sweep", str(sweep), "--device", "cpu", "--threads", "1", "--out", str(results), timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    return results


@pytest.mark.slow  # the module's sweep of every workload over 1 and 2 processes: ~3 min
@pytest.mark.parametrize("workload", sorted(registry()))
def test_two_ranks_train_and_agree(every_workload_runs, workload):
    assert workload in SMALL  # every registered workload needs small settings
    [record] = [r for r in read_records(every_workload_runs)
                if r["config"]["workload"] == workload and r["provenance"]["world_size"] == 2]
    assert record["status"] == "ok", record["reason"]
    assert record["config"]["workload"] == workload
    ranks = record["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(len(r["step_times_s"]) == 2 and len(r["step_times_s"][0]) == 2 for r in ranks)
    assert all(t > 0 for r in ranks for rep in r["step_times_s"] for t in rep)
    # The DDP correctness check: parameters bit-identical on both ranks after training.
    assert ranks[0]["param_sha256"] == ranks[1]["param_sha256"]
    assert record["metrics"]["replicas_identical"] is True
    slowest = [max(r["elapsed_s"][i] for r in ranks) for i in range(2)]
    expected = sorted(2 * record["metrics"]["global_batch_size"] / t for t in slowest)
    assert record["metrics"]["samples_per_s"] == pytest.approx(sum(expected) / 2)
    assert record["provenance"]["world_size"] == 2 and record["provenance"]["backend"] == "gloo"
    facts = record["workload"]
    assert facts["sample_unit"] and facts["num_params"] >= facts["num_trainable_params"] > 0
    assert facts["gradient_bytes_per_step"] == 4 * facts["num_trainable_params"]  # float32 gradients
    assert facts["flops_per_sample"] is None or facts["flops_per_sample"] > 0


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
    assert set(table["workload"]) == {"mlp", "cnn", "finetune", "vae", "rnn", "rl", "gpt"}
    markdown = (report_dir / "report.md").read_text()
    fitted = table[(table["mode"] == "weak") & (table["world_size"] > 1) & (table["speedup"] > 1)
                   & ~table["warnings"].fillna("").str.contains("contended")]
    assert ("## Amdahl fit (a curve fit of the measured points: a second opinion, not a measurement)" in markdown) == (
        not fitted.empty)  # a section with nothing in it is left out
    assert "_none_" not in markdown
    assert "## Collective bandwidth (netbench" in markdown and "peak_busbw_gbps" in markdown  # beside its figure
    assert "## Communication: exposed (measured)" in markdown
    assert "allreduce_bound_s" in markdown and "exposed_comm_s" in markdown and "| cnn |" in markdown
    assert "### Stragglers" in markdown
    assert table["compute_step_time_s"].notna().all()
    # measured, or (a window without communication slower than the timed one, on a loaded machine) said in words
    unmeasurable = table["warnings"].fillna("").str.contains("exposed_comm not measurable here: noise ±")
    assert (table["exposed_comm_s"].notna() | unmeasurable).all() and not (table["exposed_comm_s"] < 0).any()
    assert "### Findings" in markdown
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
                    "--window-size=1400,4000", (report_dir / "report.html").as_uri()],
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
    record["metrics"]["samples_per_s_repeats"] = [r * 0.9 for r in record["metrics"]["samples_per_s_repeats"]]
    slowed.write_text(json.dumps(record))
    same = run_cli("compare", str(baseline), str(baseline), "--tolerance", "5%", timeout=60)
    assert same.returncode == 0, same.stderr
    worse = run_cli("compare", str(baseline), str(new), "--tolerance", "5%", timeout=60)
    assert worse.returncode == 1
    assert "1 of 12 configuration(s) slower (significant at p < 0.05 and beyond 5.0%); 11 within noise" in worse.stdout
    assert run_cli("compare", str(baseline), str(new), "--tolerance", "15%", timeout=60).returncode == 0
