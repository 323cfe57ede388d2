"""Runs one local job and records how it ended; started by ``govern.jobs.local``.

Usage: ``python _wrapper.py FOLDER``. FOLDER/spec.json names the command (``argv``) and its
working directory. The command's output goes to FOLDER/output.log and, when it ends, its exit
code to FOLDER/exit.json (written atomically). The wrapper leads its own session, so the job
outlives the gateway that started it, and a gateway that starts later learns the outcome from
these files. Only the standard library is used: the wrapper must start fast and must not
depend on the job's working directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType


def main(folder: Path) -> int:
    spec = json.loads((folder / "spec.json").read_text())
    with (folder / "output.log").open("ab", buffering=0) as log:
        try:
            child = subprocess.Popen(  # noqa: S603 - running the job's command is the point
                spec["argv"],
                cwd=spec.get("workdir") or None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            log.write(f"govern: cannot start {spec['argv'][:1]}: {exc}\n".encode())
            code = 127
        else:

            def forward(signum: int, frame: FrameType | None) -> None:
                # A cancel signals the whole process group; pass on any signal sent to us alone.
                if child.poll() is None:
                    child.send_signal(signum)

            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, forward)
            code = child.wait()
    tmp = folder / "exit.json.tmp"
    tmp.write_text(json.dumps({"code": code, "finished": time.time()}))
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / "exit.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
