"""The path guard: a test touches no fixed path under /tmp or the home folder that it did not make.

A suite that reads what a person or an earlier run left behind passes on that machine and fails on the next
(a test once needed `/tmp/hpcbench-data/shards-176`, made by hand). The guard is a Python audit hook
(PEP 578) in the test processes and, through `site/sitecustomize.py` on PYTHONPATH, in every Python process
they start (the CLI, ranks, Slurm jobs' tasks). It logs a touch when all of these hold:

- the event reads, lists, writes, moves or removes a path (open, os.listdir/scandir, mkdir, rename, remove,
  rmtree, copy, glob, mkstemp/mkdtemp, chdir, a subprocess's cwd);
- the path is under a watched root (the machine's temporary folders, the home folder) and not under an
  allowed one (the suite's own TMPDIR, the known machine state, the interpreter, the checkout), or it is
  the checkout's `results/` outside `results/reference/` (run records an earlier run left);
- the innermost caller outside the standard library is this project's code (hpcbench, analysis, tests,
  benchmarks): a library reading its own conventional folder (matplotlib's font folders) is not a test's leak.

`os.stat` (and so `Path.exists`) raises no audit event: a test that only asks whether a fixed path exists
is not caught, which is also how a test asserts that something was *not* created there. Programs that are
not Python (the shell scripts, Slurm's daemons, Chromium) are not watched.

The conftest reads the log after every test and fails the test that touched the path, naming the path, the
event and the line that did it.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig

LOG_VARIABLE = "HPCBENCH_PATH_GUARD_LOG"
"""The log file (JSON lines); the guard is off in a process that does not have it."""
WATCH_VARIABLE = "HPCBENCH_PATH_GUARD_WATCH"
ALLOW_VARIABLE = "HPCBENCH_PATH_GUARD_ALLOW"
DENY_VARIABLE = "HPCBENCH_PATH_GUARD_DENY"
OURS_VARIABLE = "HPCBENCH_PATH_GUARD_OURS"

FIRST_ARG = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rmdir", "os.remove", "os.chmod", "os.chown",
             "os.utime", "os.truncate", "os.chdir", "shutil.rmtree", "tempfile.mkstemp", "tempfile.mkdtemp",
             "sqlite3.connect"}
TWO_ARGS = {"os.rename", "os.link", "os.symlink", "shutil.copyfile", "shutil.copytree", "shutil.move",
            "shutil.copymode", "shutil.copystat"}
GLOBS = {"glob.glob", "glob.glob/2"}
EVENTS = FIRST_ARG | TWO_ARGS | GLOBS | {"subprocess.Popen"}
STDLIB = (sysconfig.get_paths()["stdlib"], "<frozen ")

_state: dict[str, object] = {"busy": False, "log": None}


def _roots(variable: str) -> tuple[str, ...]:
    return tuple(os.path.join(os.path.abspath(p), "") for p in os.environ.get(variable, "").split(os.pathsep) if p)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    """`path` is one of the roots (each ends in /) or below one."""
    return path.startswith(roots) or os.path.join(path, "") in roots


def offends(path: str, watch: tuple[str, ...], allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    """Whether touching `path` (absolute) is reading or writing machine state: the longest allowed or denied root
    above it decides (the checkout is allowed, its results/ denied, results/reference/ allowed again); else
    whether it is under a watched root."""
    if not (_under(path, watch) or _under(path, deny)):
        return False
    allowed = max((len(root) for root in allow if _under(path, (root,))), default=-1)
    denied = max((len(root) for root in deny if _under(path, (root,))), default=-1)
    return denied > allowed or (denied < 0 and allowed < 0)


DIR_FD_AT = {"os.mkdir": (2,), "os.rmdir": (1,), "os.remove": (1,), "os.chmod": (2,), "os.chown": (3,), "os.utime": (3,),
             "shutil.rmtree": (1,), "os.rename": (2, 3), "os.link": (2, 3), "os.symlink": (2,)}
"""Where an event's dir_fd argument sits: a relative path beside one is relative to that folder, not to the working
directory (rmtree removes a tree so; resolved against the working directory, a folder named results inside the
tree read as the checkout's results/)."""


def _paths(event: str, args: tuple) -> list[object]:
    relative_to_fd = any(i < len(args) and isinstance(args[i], int) and args[i] >= 0  # -1 or None: no dir_fd
                         for i in DIR_FD_AT.get(event, ()))
    # os.open's event carries no dir_fd (its mode is None where builtins.open's is a string): a relative path there
    # may be relative to a folder's descriptor, as rmtree's are
    relative_to_fd = relative_to_fd or (event == "open" and len(args) > 1 and args[1] is None)
    if event in FIRST_ARG:
        return [args[0]] if args and not (relative_to_fd and _relative(args[0])) else []
    if event in TWO_ARGS:
        return [a for a in args[:2] if not (relative_to_fd and _relative(a))]
    if event in GLOBS:  # the pattern's fixed part: "/tmp/x/*.tar" touches /tmp/x
        pattern = os.fsdecode(args[0]) if isinstance(args[0], (str, bytes)) else ""
        fixed = pattern.split("*")[0].split("?")[0].split("[")[0]
        return [os.path.dirname(fixed) or "."]
    return [args[2]] if len(args) > 2 and args[2] is not None else []  # subprocess.Popen: its cwd


def _relative(path: object) -> bool:
    return isinstance(path, (str, bytes, os.PathLike)) and not os.path.isabs(os.fsdecode(path))


def _where(ours: tuple[str, ...]) -> list[str] | None:
    """This project's frames below the event, innermost first; None when the innermost caller outside the
    standard library is a library's (its own folders are its business)."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename == __file__ or frame.f_code.co_filename.startswith(STDLIB)):
        frame = frame.f_back
    if frame is None or not frame.f_code.co_filename.startswith(ours):
        return None
    stack = []
    while frame is not None:
        if frame.f_code.co_filename.startswith(ours):
            stack.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
        frame = frame.f_back
    return stack


def hook(event: str, args: tuple) -> None:
    if event not in EVENTS or _state["busy"]:
        return
    _state["busy"] = True
    try:
        watch, allow, deny, ours, log = _state["roots"]  # type: ignore[misc]
        for raw in _paths(event, args):
            if isinstance(raw, int) or raw is None:
                continue
            path = os.path.abspath(os.fsdecode(raw))
            if not offends(path, watch, allow, deny):
                continue
            where = _where(ours)
            if where is None:
                continue
            test = [frame for frame in where[3:] if os.sep + "tests" + os.sep in frame][-1:]  # the test's own line
            entry = {"test": os.environ.get("PYTEST_CURRENT_TEST", ""), "pid": os.getpid(), "event": event,
                     "path": path, "where": where[:3] + test}
            with open(log, "a") as file:  # one write per line: appends from many processes do not interleave
                file.write(json.dumps(entry) + "\n")
    except Exception:  # noqa: BLE001 - a guard must never change what the process does
        pass
    finally:
        _state["busy"] = False


def install() -> None:
    """Watch this process with the guard's variables as they are now, if the suite set them. The hook is added once
    (hooks cannot be removed); a later call takes the variables again (a pytest run inside a test sets its own)."""
    log = os.environ.get(LOG_VARIABLE)
    if not log:
        return
    _state["roots"] = (_roots(WATCH_VARIABLE), _roots(ALLOW_VARIABLE), _roots(DENY_VARIABLE), _roots(OURS_VARIABLE), log)
    if not _state["log"]:
        sys.addaudithook(hook)
    _state["log"] = log


def read_log(log: str | os.PathLike) -> list[dict]:
    try:
        with open(log) as file:
            return [json.loads(line) for line in file if line.strip()]
    except FileNotFoundError:
        return []


def describe(entries: list[dict]) -> list[str]:
    """One line per event and path (a path read on every node count is one finding), innermost frame first."""
    seen = {(e["event"], e["path"]): e for e in entries}
    return [f"{event} {path} (pid {e['pid']}, at {' <- '.join(e['where'])})" for (event, path), e in seen.items()]
