"""What a survey names: each node's (and device's, link's) metrics against its peers', the findings, their cost.

The rules are SuperBench's kind (`sb result diagnosis`): robust statistics against the peers of the same hardware,
or against a baseline survey of the same system. A value is a finding when it lies on the bad side of the fleet's
median by more than both K robust standard deviations (1.4826 x the median absolute deviation, MAD) and a floor
share of the median: the MAD alone would flag noise on a fleet whose healthy nodes agree to 1 %, the floor alone
would miss a node three spreads out on a noisy one. Peers need at least 3 nodes (with 2 nodes a difference shows,
not whose it is); a baseline needs only 1. The training run's compute step names a node slow to compute (the
matmul alone only raises an unconfirmed note), and a slow link explains the same node's slow storage reads
(they cross it).

What it costs: a synchronous data-parallel step waits for its slowest node (bulk-synchronous), so the job's step
is the slowest node's compute step plus the ring all-reduce of the reference workload's gradients at the slowest
node's link rate, 2(N-1)/N x bytes / rate. The cost of a finding is that step against the same job without the
suspect node(s), in efficiency points (against every node at the fleet's median) and in node-hours a day the
job's N nodes wait at the surveyed size.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from hpcbench.errors import ConfigError

MAD_SCALE = 1.4826
"""The MAD of a normal sample times this is its standard deviation."""
K = 3.0


@dataclass(frozen=True)
class Rule:
    metric: str
    unit: str
    worse: int
    """+1: higher is worse (times); -1: lower is worse (rates)."""
    floor: float
    """The least share of the median a finding must be away from it."""
    probe: str
    kind: str
    """What a finding of this metric names: compute, link, storage."""


RULES = (
    Rule("compute_step_ms", "ms", +1, 0.30, "training run's compute-only window (the reference workload)", "compute"),
    Rule("matmul_gflops", "GFLOP/s", -1, 0.30, "dense matmul on every device at once, sustained", "compute"),
    Rule("matmul_shared", "x", -1, 0.30, "dense matmul with every node at once over the same node alone", "contention"),
    Rule("step_jitter", "CV", +1, 1.00, "training run's per-step times", "steadiness"),
    Rule("link_gbps", "Gbit/s", -1, 0.25, "ring sends, best of the node's edges", "link"),
    Rule("storage_alone_mbps", "MB/s", -1, 0.25, "reads from the shared path, one node at a time", "storage"),
    Rule("storage_together_mbps", "MB/s", -1, 0.25, "reads from the shared path, every node at once", "storage"),
)
"""Every metric a node is judged on. The floors are wide enough for this project's emulated cluster, whose four
nodes share two cores (in the 16 surveys of two runs of benchmarks/survey_emulated.py, healthy nodes' compute steps
came out 0.62x-1.21x their median, matmul rates 0.89x-1.25x, step jitter 0.77x-1.44x, in the second run matmul
together over alone 0.85x-1.21x), and narrow enough that every fault
of that benchmark (2x or more) clears them. On a fleet of dedicated GPUs, where healthy devices agree within a few
percent, they are loose: a device 25 % slow is missed there (judge it against a --baseline of the same fleet)."""


def node_metrics(record: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """node -> metric -> value: a node's slowest device for compute, its best edge for its link."""
    m = record["metrics"]
    nodes = m["nodes"]
    table: dict[str, dict[str, float | None]] = {node: {rule.metric: None for rule in RULES} for node in nodes}
    for rank in m["ranks"]:
        row = table[rank["host"]]
        if rank["matmul_gflops"]:  # None: the node's matmul did not answer (its `problems` say why)
            gflops = statistics.median(rank["matmul_gflops"])
            row["matmul_gflops"] = gflops if row["matmul_gflops"] is None else min(row["matmul_gflops"], gflops)
        if rank["matmul_gflops"] and rank.get("matmul_alone_gflops"):  # the node's turn alone (a sample of nodes)
            shared = statistics.median(rank["matmul_gflops"]) / statistics.median(rank["matmul_alone_gflops"])
            row["matmul_shared"] = shared if row["matmul_shared"] is None else min(row["matmul_shared"], shared)
        for name in ("alone", "together"):
            rate = (rank.get("storage") or {}).get(f"{name}_bytes_per_s")
            if rate is not None:
                row[f"storage_{name}_mbps"] = rate / 1e6
    for rank in (m.get("training") or {}).get("ranks", []):
        row = table.get(rank["host"])
        compute = rank.get("compute_step_times_s") or []
        steps = [t for repeat in rank.get("step_times_s") or [] for t in repeat]
        if row is None or not compute:
            continue
        step_ms = 1e3 * statistics.median(compute)
        row["compute_step_ms"] = step_ms if row["compute_step_ms"] is None else max(row["compute_step_ms"], step_ms)
        if len(steps) > 1:
            jitter = statistics.pstdev(steps) / statistics.mean(steps)
            row["step_jitter"] = jitter if row["step_jitter"] is None else max(row["step_jitter"], jitter)
    for node, best in edge_rates(record)[1].items():
        table[nodes[node]]["link_gbps"] = best
    return table


def edge_rates(record: dict[str, Any]) -> tuple[dict[tuple[int, int], float], dict[int, float]]:
    """Each measured edge's Gbit/s and each node's best edge, in and out. An edge's rate is its best send over the
    repeats: a link's capacity shows in every send, a passing load on either end slows some (one healthy edge of the
    emulated cluster measured 0.22, 0.23 and 0.13 s for 16 MiB in one survey: its median named it a slow link)."""
    m = record["metrics"]
    times: dict[tuple[int, int], list[float]] = {}
    for rank in m["ranks"]:
        for edge in rank["edges_in"]:
            if edge["kind"] == "bandwidth":
                times.setdefault((edge["from"], edge["to"]), []).append(edge["seconds"])
    rates = {edge: 8 * m["link_bytes"] / min(seconds) / 1e9 for edge, seconds in times.items()}
    best: dict[int, float] = {}
    for (a, b), rate in rates.items():
        for node in (a, b):
            best[node] = max(best.get(node, 0.0), rate)
    return rates, best


def fleet(values: list[float]) -> tuple[float, float]:
    """The fleet's median and robust spread (1.4826 x MAD)."""
    median = statistics.median(values)
    return median, MAD_SCALE * statistics.median(abs(v - median) for v in values)


def diagnose(record: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every finding: node, metric, value, the fleet's median and spread, how far out, the probe that showed it.
    Empty on a healthy fleet (and on one too small to say whose a difference is)."""
    table = node_metrics(record)
    reference = node_metrics(baseline) if baseline else table
    findings = []
    for rule in RULES:
        peers = [row[rule.metric] for row in reference.values() if row[rule.metric] is not None]
        if len(peers) < (1 if baseline else 3):
            continue
        median, spread = fleet(peers)
        threshold = max(K * spread, rule.floor * abs(median))
        for node, row in table.items():
            value = row[rule.metric]
            if value is not None and rule.worse * (value - median) > threshold:
                findings.append({"node": node, "kind": rule.kind, "metric": rule.metric, "unit": rule.unit,
                                 "value": value, "fleet_median": median, "fleet_spread": spread,
                                 "ratio": value / median if median else None, "probe": rule.probe,
                                 "against": "baseline" if baseline else "peers"})
    findings = _confirmed(findings, table)
    slow_links = {f["node"] for f in findings if f["kind"] == "link"}
    for f in findings:  # a node's reads from the storage cross its own link: a slow link explains them
        if f["kind"] == "link":
            storage = next((g for g in findings if g["node"] == f["node"] and g["kind"] == "storage"), None)
            f["also"] = (f"its storage reads too ({storage['value']:.3g} {storage['unit']}): they cross this link"
                         if storage else None)
    findings = [f for f in findings if not (f["kind"] == "storage" and f["node"] in slow_links)]
    return findings + _slow_links(record, slow_links) + unanswered(record)


def unanswered(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A node whose own probe raised or hung (hpcbench.probes.survey.bounded): named with the probe and the reason,
    whatever its peers show (a node that cannot run a probe holds a job back however fast the others are)."""
    return [{"node": rank["host"], "kind": "unanswered", "metric": problem["probe"], "unit": "", "value": None,
             "reason": problem["reason"], "probe": problem["probe"], "against": "itself"}
            for rank in record["metrics"]["ranks"] for problem in rank.get("problems") or []]


def _confirmed(findings: list[dict[str, Any]], table: dict[str, dict[str, float | None]]) -> list[dict[str, Any]]:
    """A node is named slow to compute by the training run's compute-only step (what the job runs, timed over many
    steps); the matmul alone is a second opinion: beyond the fleet on its own it is kept as unconfirmed, not
    named (1.5 s of matmul a device catches a passing load that the training run's many steps average out)."""
    named = {f["node"] for f in findings if f["metric"] == "compute_step_ms"}
    return [{**f, "kind": "unconfirmed"} if f["kind"] == "compute" and f["node"] not in named
            and table[f["node"]]["compute_step_ms"] is not None else f for f in findings]


def _slow_links(record: dict[str, Any], slow_nodes: set[str]) -> list[dict[str, Any]]:
    """Edges far below the fleet's edges whose two ends are both fast elsewhere: the link between them."""
    nodes = record["metrics"]["nodes"]
    rates, best = edge_rates(record)
    if len(rates) < 3:
        return []
    median, spread = fleet(list(rates.values()))
    threshold = max(K * spread, 0.25 * median)
    return [{"node": f"{nodes[a]}->{nodes[b]}", "kind": "link", "metric": "edge_gbps", "unit": "Gbit/s", "value": rate,
             "fleet_median": median, "fleet_spread": spread, "ratio": rate / median, "probe": "ring sends (one edge)",
             "against": "peers"}
            for (a, b), rate in rates.items()
            if median - rate > threshold and nodes[a] not in slow_nodes and nodes[b] not in slow_nodes
            and best[a] - rate > threshold and best[b] - rate > threshold]


def step_model(table: dict[str, dict[str, float | None]], gradient_bytes: int | None, nodes: list[str]) -> float | None:
    """The synchronous step of a job over `nodes`: the slowest compute step + the ring all-reduce at the slowest link."""
    compute = [table[n]["compute_step_ms"] for n in nodes if table[n]["compute_step_ms"] is not None]
    if not compute:
        return None
    links = [table[n]["link_gbps"] for n in nodes if table[n]["link_gbps"]]
    comm_ms = (1e3 * 2 * (len(nodes) - 1) / len(nodes) * gradient_bytes * 8 / (min(links) * 1e9)
               if gradient_bytes and links and len(nodes) > 1 else 0.0)
    return max(compute) + comm_ms


def cost(record: dict[str, Any], findings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The job over every node against the same job without the suspects: efficiency points and node-hours a day."""
    table = node_metrics(record)
    nodes = record["metrics"]["nodes"]
    suspects = sorted({f["node"] for f in findings if f["node"] in table and f["kind"] in ("compute", "link", "steadiness")})
    training = record["metrics"].get("training") or {}
    gradient_bytes = training.get("gradient_bytes_per_step")
    rest = [n for n in nodes if n not in suspects]
    t_all, t_rest = step_model(table, gradient_bytes, nodes), step_model(table, gradient_bytes, rest)
    if not suspects or t_all is None or t_rest is None or not rest:
        return None
    typical = {metric: statistics.median(values) if (values := [table[m][metric] for m in rest if table[m][metric]]) else None
               for metric in ("compute_step_ms", "link_gbps")}
    healthy = {n: {**table[n], **typical} for n in nodes}  # every node at the healthy nodes' median
    ideal = step_model(healthy, gradient_bytes, nodes)
    return {"suspects": suspects, "num_nodes": len(nodes), "step_ms_all": t_all, "step_ms_without": t_rest,
            "efficiency_all": ideal / t_all, "efficiency_without": ideal / t_rest,
            "efficiency_points": 100 * (ideal / t_rest - ideal / t_all),
            "node_hours_per_day": 24 * len(nodes) * (1 - t_rest / t_all),
            "model": f"bulk-synchronous: slowest node's compute step + ring all-reduce of {training.get('workload')}'s "
                     f"{gradient_bytes} gradient bytes at the slowest link"}


def exclude_lines(suspects: list[str], nodes: list[str]) -> dict[str, str]:
    """Ready to paste, per scheduler: the submit option that leaves the suspects out."""
    from hpcbench.launch.schedulers import SCHEDULERS

    keep = [n for n in nodes if n not in suspects]
    return {name: cls.leave_out(suspects, keep) for name, cls in SCHEDULERS.classes().items()} if keep else {}


def survey_table(record: dict[str, Any], findings: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The node x metric table: each cell its value and its ratio to the fleet's median, a finding starred."""
    table = node_metrics(record)
    flagged = {(f["node"], f["metric"]) for f in findings}
    medians = {rule.metric: statistics.median(v) for rule in RULES
               if (v := [row[rule.metric] for row in table.values() if row[rule.metric] is not None])}
    shown = [rule for rule in RULES if rule.metric in medians]
    rows = []
    for node in record["metrics"]["nodes"]:
        cells = [node]
        for rule in shown:
            value = table[node][rule.metric]
            ratio = f" ({value / medians[rule.metric]:.2f}x)" if value is not None and medians[rule.metric] else ""
            cells.append("-" if value is None else f"{value:.3g}{ratio}{' *' if (node, rule.metric) in flagged else ''}")
        rows.append(cells)
    return ["node", *(f"{rule.metric} ({rule.unit})" for rule in shown)], rows


def ratios(record: dict[str, Any]) -> tuple[list[str], list[str], list[list[float]]]:
    """Nodes, metrics and each value over its fleet's median, oriented so that above 1 is worse (the figure)."""
    table = node_metrics(record)
    nodes = record["metrics"]["nodes"]
    shown, grid = [], []
    for rule in RULES:
        values = [table[n][rule.metric] for n in nodes]
        present = [v for v in values if v is not None]
        if not present or not statistics.median(present):
            continue
        median = statistics.median(present)
        shown.append(rule.metric)
        grid.append([float("nan") if v is None else (v / median) ** rule.worse for v in values])
    return nodes, shown, [list(row) for row in zip(*grid)]


def format_survey(record: dict[str, Any], findings: list[dict[str, Any]], priced: dict[str, Any] | None) -> str:
    """The node x metric table (each cell against the fleet median, outliers starred), the findings, the cost."""
    nodes = record["metrics"]["nodes"]
    header, rows = survey_table(record, findings)
    width = max(len(cell) for row in [header, *rows] for cell in row[1:]) + 2
    lines = [f"{header[0]:<16}" + "".join(f"{cell:>{width}}" for cell in header[1:])]
    lines += [f"{row[0]:<16}" + "".join(f"{cell:>{width}}" for cell in row[1:]) for row in rows]
    lines.append("(x: against the fleet's median; *: a finding)")
    if len(nodes) < 3:
        lines.append(f"{len(nodes)} node(s): each device's compute and steadiness are measured, but with fewer than 3 "
                     "nodes no peer majority says which one is off" + (" and no link is between nodes" if len(nodes) == 1 else "")
                     + "; compare against a baseline survey (--baseline) or survey more nodes")
    named = [f for f in findings if f["kind"] not in ("unconfirmed", "unanswered")]
    failed = [f for f in findings if f["kind"] == "unanswered"]
    for f in failed:
        lines.append(f"did not answer: {f['node']}'s {f['probe']} probe: {f['reason']}")
    for f in findings:
        if f["kind"] == "unconfirmed":
            lines.append(f"not named: {f['node']}'s {f['metric']} {f['value']:.3g} {f['unit']} against the median "
                         f"{f['fleet_median']:.3g}, but its other compute probe is within the fleet: a passing load, or "
                         "a fault one probe sees; survey again")
    if not named and not failed:
        lines.append("no finding: every node within its fleet's spread")
        return "\n".join(lines)
    lines += ["findings:"] if named else []
    for f in named:
        lines.append(f"  {f['node']}: {f['kind']} ({f['metric']}) {f['value']:.3g} {f['unit']} against the "
                     f"{f['against']}' median {f['fleet_median']:.3g} (spread {f['fleet_spread']:.2g}); shown by the {f['probe']}"
                     + (f"; slows {f['also']}" if f.get("also") else ""))
    if priced:
        lines.append(f"cost at {priced['num_nodes']} nodes: the job's step {priced['step_ms_all']:.1f} ms with every node, "
                     f"{priced['step_ms_without']:.1f} ms without {', '.join(priced['suspects'])}: "
                     f"{priced['efficiency_points']:.1f} efficiency points, {priced['node_hours_per_day']:.1f} node-hours "
                     f"a day ({priced['model']})")
    # the priced suspects and every node that did not answer (nothing to price there, but it is left out all the same)
    suspects = sorted(set(priced["suspects"] if priced else []) | {f["node"] for f in failed})
    lines += leave_out_lines(suspects, nodes)
    return "\n".join(lines)


def leave_out_lines(suspects: list[str], nodes: list[str]) -> list[str]:
    return [f"to leave them out ({name}): {line}" for name, line in exclude_lines(suspects, nodes).items()]


@dataclass(frozen=True)
class SurveyedFleet:
    """What a survey gives the forecast (hpcbench.analysis.predict) in place of the shared defaults."""

    spread: float
    """The devices' speed spread: (slowest - fastest) / median of every device's median compute-only step."""
    step_deviations: tuple[float, ...]
    """Every surveyed step's time over its own device's median, minus 1, pooled: the per-step jitter, relative (the
    forecast scales it to its compute step, so a survey of the target GPUs carries to a run measured elsewhere)."""
    link_slowdowns: tuple[float, ...]
    """Per node: the median node's link rate over its own (1.0 typical, 2.0 a node at half the rate); empty with
    fewer than 2 nodes (no link between nodes was measured)."""
    source: str


def surveyed_fleet(record: dict[str, Any]) -> SurveyedFleet:
    """The survey's devices and links as the forecast's fleet; a ConfigError where it ran no training (nothing per
    device to spread)."""
    ranks = [r["compute_step_times_s"] for r in (record["metrics"].get("training") or {}).get("ranks", [])
             if r.get("compute_step_times_s")]
    if len(ranks) < 2:
        raise ConfigError("survey", f"survey {record['run_id']} has fewer than 2 devices with a compute-only step: "
                          "no spread to measure")
    medians = [statistics.median(steps) for steps in ranks]
    spread = (max(medians) - min(medians)) / statistics.median(medians)
    deviations = tuple(t / m - 1 for steps, m in zip(ranks, medians) for t in steps)
    rates = [rate for rate in edge_rates(record)[1].values() if rate > 0]
    typical = statistics.median(rates) if rates else None
    slowdowns = tuple(typical / rate for rate in rates) if typical else ()
    links = (f"; node links {min(rates):.3g}-{max(rates):.3g} Gbit/s" if rates else "; no link between nodes")
    return SurveyedFleet(spread, deviations, slowdowns,
                         f"survey {record['run_id']}: {len(ranks)} devices on {len(record['metrics']['nodes'])} node(s), "
                         f"compute-only steps {min(medians) * 1e3:.1f}-{max(medians) * 1e3:.1f} ms{links}")


SAME_HARDWARE = ("cpu_model", "gpu_model", "gpus_per_node")
"""What a baseline must share with the survey it judges: the devices (not the software, which a baseline may predate)."""


def load_survey(source: str, like: dict[str, Any] | None = None) -> dict[str, Any]:
    """A survey record, or a folder's newest; with `like`, a baseline, refused when its hardware differs."""
    from hpcbench.analysis.load import read_valid

    found = [record for _, record in read_valid([source]) if record.get("kind") == "survey"]
    what = "baseline" if like else "from"
    if not found:
        raise ConfigError(what, f"no survey record in {source}")
    record = max(found, key=lambda r: r["provenance"]["started"])
    if like:
        differs = [name for name in SAME_HARDWARE if record["system"].get(name) != like["system"].get(name)]
        if differs:
            name = differs[0]
            raise ConfigError(what, f"{source} surveyed other hardware ({name} {record['system'].get(name)!r}, not "
                              f"{like['system'].get(name)!r}): judge a fleet only against a survey of the same devices")
    return record


def load_surveys(sources: list[str]) -> list[dict[str, Any]]:
    """Every survey record under `sources`, oldest first."""
    from hpcbench.analysis.load import read_valid

    found = [record for _, record in read_valid(sources) if record.get("kind") == "survey"]
    if not found:
        raise ConfigError("history", f"no survey record in {', '.join(sources)}")
    return sorted(found, key=lambda r: r["provenance"]["started"])


def node_history(surveys: list[dict[str, Any]], alpha: float = 0.001) -> list[dict[str, Any]]:
    """Each node's metrics over the surveys of one machine (its name and devices), as ratios to the fleet's median in
    each survey, so that what moves every node alike (a software upgrade, a new workload default) cancels and a node
    that drifts from its peers shows; steps found by `hpcbench history`'s test (binary segmentation, Bonferroni-
    corrected t on logs, analysis.history.detect_steps). One row per machine, node and metric with at least one value."""
    from hpcbench.analysis.history import detect_steps

    series: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    for record in surveys:
        machine = " ".join(str(record["system"].get(k)) for k in ("name", *SAME_HARDWARE))
        table = node_metrics(record)
        for rule in RULES:
            values = [row[rule.metric] for row in table.values() if row[rule.metric] is not None]
            median = statistics.median(values) if values else None
            for node, row in table.items():
                if row[rule.metric] is not None and median:
                    series.setdefault((machine, node, rule.metric), []).append((record["run_id"], row[rule.metric] / median))
    worse = {rule.metric: rule.worse for rule in RULES}
    rows = []
    for (machine, node, metric), points in sorted(series.items()):
        ratios = [ratio for _, ratio in points]
        steps = detect_steps(ratios, alpha=alpha) if min(ratios) > 0 else []
        rows.append({"machine": machine, "node": node, "metric": metric, "surveys": len(points), "first": ratios[0],
                     "last": ratios[-1], "steps": [{"survey": s.index + 1, "run_id": points[s.index][0],
                                                    "change": s.ratio - 1, "confidence": s.confidence,
                                                    "verdict": "worse" if (s.ratio - 1) * worse[metric] > 0 else "better"}
                                                   for s in steps]})
    return rows


def format_node_history(rows: list[dict[str, Any]]) -> str:
    """Per node, the metrics that stepped against the fleet (each step's survey, size and confidence), then a count."""
    lines = []
    for row in rows:
        for step in row["steps"]:
            lines.append(f"{row['node']}: {row['metric']} {step['verdict']} by {abs(step['change']):.0%} against its "
                         f"fleet from survey {step['survey']} of {row['surveys']} ({step['run_id']}), confidence "
                         f"{step['confidence']:.3f}; now {row['last']:.2f}x the fleet's median ({row['machine']})")
    stepped = sum(bool(row["steps"]) for row in rows)
    nodes = len({(row["machine"], row["node"]) for row in rows})
    most = max((row["surveys"] for row in rows), default=0)
    lines.append(f"{stepped} of {len(rows)} node metrics stepped against their fleet ({nodes} node(s), up to {most} "
                 "surveys each; a step needs 3 surveys either side)")
    return "\n".join(lines)
