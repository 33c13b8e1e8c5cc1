"""Run every benchmark and print one markdown table of their figures.

Each benchmark runs as a child process of its own (its memory and CPU figures
are its own), prints its own table as it goes, and hands its figures back; this
script prints them together at the end, ready for the README. From the
repository root:

    .venv/bin/python -m bench            # or: .venv/bin/python bench/run_all.py
    .venv/bin/python -m bench --only overhead,monitoring

Prefect's and the campaigns' logs go to a file whose path is printed at the end.
The whole run takes about 15 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._support import Figure, figures_table  # noqa: E402

BENCH = Path(__file__).resolve().parent
# Name, script and arguments, in the order they run.
BENCHMARKS = {
    "cps": ["cps.py", "--seconds", "15"],
    "overhead": ["overhead.py"],
    "monitoring": ["monitoring.py"],
    "scale": ["scale.py"],
}


def run_one(name: str, folder: Path, log) -> list[Figure]:
    """Run one benchmark; return its figures, or one row saying it failed."""
    script, *arguments = BENCHMARKS[name]
    out = folder / f"{name}.json"
    command = [sys.executable, str(BENCH / script), *arguments, "--json-out", str(out)]
    print(f"\n## {name}: {' '.join(command[1:-2])}", flush=True)
    started = time.perf_counter()
    finished = subprocess.run(command, stderr=log, check=False)
    seconds = time.perf_counter() - started
    if finished.returncode != 0 or not out.exists():
        return [Figure(name, "run", f"failed (exit {finished.returncode})", met=False)]
    figures = [Figure(**item) for item in json.loads(out.read_text())]
    print(f"({name} took {seconds:.0f} s)", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help=f"comma-separated names among: {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    log_path = Path(tempfile.mkstemp(prefix="prefect-retell-bench-", suffix=".log")[1])
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as folder, log_path.open("w") as log:
        for name in names:
            figures += run_one(name, Path(folder), log)

    print(
        f"\n## All figures ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"Python {platform.python_version()})\n"
    )
    print(figures_table(figures))
    print(f"\nLogs of the runs: {log_path}")


if __name__ == "__main__":
    main()
