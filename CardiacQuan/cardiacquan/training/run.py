"""Logging and detaching shared by the training commands (`train-seg`, `train-quan`).

Training takes minutes on a GPU and hours on a laptop: it must survive the terminal that
started it and leave a timestamped log a user can follow (`tail -f`) and quote.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def timestamped_logger(path=None):
    """A log(*parts) function printing '[HH:MM:SS] line' to stdout and, if given, to `path`."""
    fh = open(path, "a", buffering=1) if path else None

    def log(*parts):
        msg = " ".join(str(p) for p in parts)
        stamp = time.strftime("%H:%M:%S")
        for line in msg.splitlines() or [""]:
            print(f"[{stamp}] {line}", flush=True)
            if fh:
                fh.write(f"[{stamp}] {line}\n")
    return log


def run_detached(command: str, log_path, argv=None) -> int:
    """Re-run `cardiacquan COMMAND ...` (this process's arguments without --background/--log)
    as a detached process whose output goes to `log_path`; print its pid and the log's path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if command in argv:
        argv = argv[argv.index(command) + 1:]
    argv = [a for a in argv if a != "--background"]
    if "--log" in argv:                       # the child's stdout already goes to the log
        i = argv.index("--log")
        argv = argv[:i] + argv[i + 2:]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    lib_parent = str(Path(__file__).resolve().parents[2])   # the folder that holds cardiacquan/
    env["PYTHONPATH"] = lib_parent + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "a") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "cardiacquan", command] + argv, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    print(f"training runs in the background: pid {proc.pid}, log {log_path}")
    return 0
