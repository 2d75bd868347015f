"""MkDocs hook: the reference pages are generated from the code at build time, so they cannot go stale.

A page writes `<!-- generated: NAME -->` where a generated block goes; NAME is one of GENERATORS.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

PLACEHOLDER = re.compile(r"<!-- generated: ([a-z-]+) -->")


def cli_reference() -> str:
    """Every command's `--help`, as argparse prints it (the parser is the only source of truth)."""
    from hpcbench import cli

    blocks = []
    for path, parser in cli.command_parsers(cli.build_parser()):
        name = " ".join(("hpcbench", *path))
        blocks.append(f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(blocks)


def sweep_keys() -> str:
    """The keys a sweep file accepts: its axes, every run flag, and each workload's and engine's options."""
    from hpcbench.config import flag_fields
    from hpcbench.engines import ENGINES
    from hpcbench.flags import field_doc
    from hpcbench.matrix import NOT_IN_FILES, SCALE_KEYS, SWEPT_FIELDS, file_key
    from hpcbench.plugins import option_flag
    from hpcbench.workloads import registry

    rows = ["| key | what | a list sweeps it |", "|---|---|---|",
            "| `workloads` | workloads to run (`hpcbench list`) | yes |", "| `engines` | engines to run | yes |"]
    rows += [f"| `{key}` | the scale: {'local processes' if key == 'nproc' else 'nodes × tasks per node on a cluster'} "
             "| yes |" for key in SCALE_KEYS]
    for f in flag_fields():
        if f.name in NOT_IN_FILES:
            continue
        rows.append(f"| `{file_key(f)}` | {_cell(f.metadata['help'])} | {'yes' if f.name in SWEPT_FIELDS else 'no'} |")
    for name, workload in sorted(registry().items()):
        for f in dataclasses.fields(workload.Options):
            rows.append(f"| `{name}.{f.name}` | {_cell(field_doc(workload.Options, f.name))} (`--{option_flag(f.name)}`) "
                        "| yes |")
    for name, engine in ENGINES.classes().items():
        for f in dataclasses.fields(engine.Options):
            rows.append(f"| `{name}.{f.name}` | {_cell(field_doc(engine.Options, f.name))} "
                        f"(`--{option_flag(f.name, engine.flag_prefix)}`) | yes |")
    return "\n".join(rows) + "\n"


def fabrics() -> str:
    """The shipped fabrics `hpcbench predict --fabric` takes, each value with its published source."""
    from hpcbench.analysis.netmodel import fabric_names, load_fabric

    blocks = []
    for name in fabric_names():
        fabric = load_fabric(name)
        rows = ["| key | value | source |", "|---|---|---|"]
        rows += [f"| `{key}` | {value['value']} | {_cell(value['source'])} |" for key, value in fabric.items()
                 if isinstance(value, dict) and "value" in value]
        blocks.append(f"## `{name}`\n\n{_cell(fabric.get('description', ''))}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(blocks)


def record_fields() -> str:
    """The record's fields from the JSON Schema the project ships (hpcbench/schema/record.schema.json)."""
    import json
    from importlib import resources

    schema = json.loads((resources.files("hpcbench") / "schema" / "record.schema.json").read_text())

    def table(properties: dict, prefix: str = "") -> list[str]:
        rows = []
        for name, spec in properties.items():
            kind = spec.get("type") or ("one of " + ", ".join(map(str, spec["enum"])) if "enum" in spec else "")
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            rows.append(f"| `{prefix}{name}` | {kind} | {_cell(spec.get('description', ''))} |")
        return rows

    top = schema["properties"]
    head = ["| field | type | what |", "|---|---|---|"]
    return "\n".join([
        _cell(schema["description"]), "", "## Top level", "", *head, *table(top), "",
        "## `metrics` of a training run", "", *head, *table(top["metrics"]["properties"], "metrics."), "",
        "## `ranks[]`", "", *head, *table(top["ranks"]["items"]["properties"], "ranks[]."), ""])


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


GENERATORS: dict[str, Callable[[], str]] = {"cli": cli_reference, "sweep-keys": sweep_keys, "fabrics": fabrics,
                                            "record-fields": record_fields}


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs' hook signature)
    def generate(match: re.Match[str]) -> str:
        if match.group(1) not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: no generator {match.group(1)!r} (known: {', '.join(GENERATORS)})")
        return GENERATORS[match.group(1)]()
    return PLACEHOLDER.sub(generate, markdown)


IFRAME_WORKER = "https://unpkg.com/iframe-worker/shim"
"""Material's offline plugin loads its file:// Web Worker shim from the network; the site uses the vendored copy."""


def on_post_page(output: str, page, config) -> str:  # noqa: ANN001 (MkDocs' hook signature)
    depth = page.file.dest_uri.count("/")
    return output.replace(IFRAME_WORKER, "../" * depth + "assets/javascripts/iframe-worker-shim.js")
