"""Fault tests: property-based fuzzing of the command line and the config surface.

Whatever the input, the outcome is either a run that would launch (validation passed) or exit
code 2 with one line on stderr naming the field — never a traceback.
"""

import dataclasses

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hpcbench import cli
from hpcbench.config import ConfigError, RunConfig
from hpcbench.flags import workload_option_fields
from hpcbench.workloads import registry


class Launched(Exception):
    """Raised instead of starting workers: the input passed every check."""


RUN_FLAGS = [f.metadata["flag"] for f in dataclasses.fields(RunConfig) if "flag" in f.metadata and f.name != "out_dir"]
OPTION_FLAGS = ["--" + name.replace("_", "-") for name in workload_option_fields()]
NASTY_TEXT = ["", "0", "-1", "1", "2", "3", "1.5", "nan", "inf", "-inf", "1e400", "true", "no", "x; touch /tmp/pwned",
              "$(id)", "\u00e9\u00e8", "cpu", "cuda", "auto", "real", "synthetic", "ddp", "horovod", *sorted(registry())]
values = st.one_of(st.sampled_from(NASTY_TEXT), st.integers(-5, 5000).map(str), st.text(max_size=12))
flags = st.sampled_from(RUN_FLAGS + OPTION_FLAGS + ["--workloads", "--bogus", "-x"])
argv_pairs = st.lists(st.tuples(flags, values), max_size=6)


@pytest.fixture
def no_launch(monkeypatch):
    def launch(cfg):
        raise Launched(cfg)

    monkeypatch.setattr("hpcbench.launch.local.run_local", launch)


def outcome(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    except Launched:
        code = None
    return code, capsys.readouterr().err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["run", "sweep"]), pairs=argv_pairs)
@example(command="run", pairs=[("--workloads", "\n")])  # found in CI: argparse quoted the line break
def test_any_command_line_launches_or_fails_in_one_line(no_launch, capsys, tmp_path, command, pairs):
    if command == "sweep":
        pairs = [(flag, value) for flag, value in pairs if flag not in ("--workload", "--nproc")]
    argv = [command, *[token for pair in pairs for token in pair], "--out", str(tmp_path / "out")]
    code, err = outcome(argv, capsys)
    if code is None:
        return  # valid: it would have run
    assert code == 2, (argv, code, err)
    assert err.count("\n") == 1 and err.startswith("hpcbench"), (argv, err)
    assert "Traceback" not in err and " error: " in err, (argv, err)


config_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True), st.text(max_size=8),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
config_keys = st.sampled_from([f.name for f in dataclasses.fields(RunConfig)] + ["bogus", "nodes"])


@settings(max_examples=500, deadline=None)
@given(values=st.dictionaries(config_keys, config_values, max_size=6))
def test_any_config_dict_is_valid_or_a_config_error(values):
    """The config-file surface (sweep files, records read back): ConfigError, never TypeError."""
    try:
        RunConfig.from_dict(values)
    except ConfigError as exc:
        assert str(exc).split(":", 1)[0].strip(), exc  # names the field
