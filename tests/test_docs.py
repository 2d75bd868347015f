"""The documentation: the site builds in strict mode (a broken link, a missing page in the nav or a failing
generated reference fails it), the generated reference holds what the code has, the tutorials' marked commands
run as written and print what the page says, the README's links resolve, and the built site's search works
from files in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKED = re.compile(r'<!-- test: expect "([^"]+)" -->\n```bash\n(.+?)\n```', re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                            "-d", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def test_the_site_builds_strict_with_the_reference_generated_from_the_code(site):
    cli = (site / "reference" / "cli.html").read_text()
    for text in ("hpcbench run", "--repeats-width", "hpcbench predict", "--hvd-fusion-threshold-mb"):
        assert text in cli, text
    assert "generated:" not in cli  # every placeholder was filled
    assert "h100-ndr" in (site / "reference" / "fabrics.html").read_text()
    assert "global_batch_size" in (site / "reference" / "sweep-files.html").read_text()
    assert (site / "search" / "search_index.js").exists() or (site / "search" / "search_index.json").exists()


def test_the_readme_is_a_front_door_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links and [link for link in links if not (ROOT / link).exists()] == []


def test_the_first_tutorial_runs_as_written(tmp_path):
    """Its marked blocks, in order, in an empty folder, with the environment's `hpcbench` on PATH (as after
    `source .venv/bin/activate`): each exits 0 and prints what the page says it prints."""
    page = (ROOT / "docs" / "tutorials" / "first-scaling-plot.md").read_text()
    blocks = MARKED.findall(page)
    assert len(blocks) == 2
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for expected, commands in blocks:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (commands, done.stderr[-3000:])
        assert expected in done.stdout + done.stderr, (commands, expected, done.stdout[-2000:])
    assert (tmp_path / "results" / "tutorial" / "report" / "report.html").exists()
    from test_records import record_schema_errors

    written = [json.loads(p.read_text()) for p in (tmp_path / "results" / "tutorial").glob("*.json")]
    assert len(written) == 2 and [record_schema_errors(r) for r in written] == [[], []]  # records the code writes today


@pytest.mark.browser
def test_the_built_site_searches_offline_in_headless_chromium(site):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("headless Chromium not installed (Debian package chromium; .ci/run installs it)")
    page = (site / "index.html").as_uri() + "?q=efficiency"  # Material opens its search with the query
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
                          "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    results = re.findall(r'class="md-search-result__item"', dom)
    assert results, shlex.quote(dom[-2000:])
