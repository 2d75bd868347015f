"""The README's two commands are the project's contract; CI must run the second one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_starts_with_the_demo_then_the_test_command():
    demo, tests = readme_commands()
    assert ' && .venv/bin/hpcbench sweep --out "$d" && ' in demo and "d=results/demo-$(date -u " in demo
    assert demo.endswith('hpcbench report "$d" -o "$d/report"')  # the demo's own folder: never reference records
    assert tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert readme_commands()[1] in ci_lines
