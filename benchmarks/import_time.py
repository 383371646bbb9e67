"""Import time of django_dbconfig after Django, as `python -X importtime` reports it.

    .venv/bin/python benchmarks/import_time.py [--rounds 15]

Each round runs fresh interpreters of

    python -X importtime -c "import django; import django.conf; <statement>"

and adds up the cumulative times of the top-level lines after `django.conf`'s: the
package, and the modules it loads later, with whatever they import that Django had
not. Two statements: `import django_dbconfig` (what Django does for INSTALLED_APPS)
and `from django_dbconfig import build_databases` (what settings.py does). Two ways of
loading the package, from a copy of it in a temporary folder: with its bytecode
compiled (as after `pip install`), and from source with no bytecode cache
(PYTHONDONTWRITEBYTECODE=1, as in a checkout that never writes `__pycache__`). Django
and the standard library load from their installed bytecode in both.
The table shows the median and the fastest round, in milliseconds.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATEMENTS = ("import django_dbconfig", "from django_dbconfig import build_databases")
TARGET_MS = 15.0


def measure(statement: str, package_parent: Path, *, bytecode: bool) -> float:
    """Milliseconds for `statement` in one fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(package_parent)
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    code = f"import django; import django.conf; {statement}"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True, text=True, env=env, check=True, cwd=package_parent,
    )  # fmt: skip
    # (-c puts the working directory first on sys.path: it is the copy's folder.)
    # Everything imported after django.conf: the top-level lines (no indentation before
    # the name) that follow it, each with its cumulative microseconds.
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("| django.conf"))
    total = 0
    for line in lines[start + 1 :]:
        match = re.match(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if match:
            total += int(match.group(1))
    if total == 0:
        raise SystemExit(f"no django_dbconfig line in -X importtime output:\n{result.stderr[-2000:]}")
    return total / 1000


def copy_package(package: Path, into: Path, *, bytecode: bool) -> Path:
    target = into / "django_dbconfig"
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__"))
    if bytecode:
        compileall.compile_dir(target, quiet=1)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--package",
        type=Path,
        default=ROOT / "django_dbconfig",
        help="the django_dbconfig folder to measure, e.g. another checkout's (default: this one)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as compiled, tempfile.TemporaryDirectory() as source:
        modes = {
            "bytecode": copy_package(args.package, Path(compiled), bytecode=True),
            "source": copy_package(args.package, Path(source), bytecode=False),
        }
        times: dict[tuple[str, str], list[float]] = {(s, m): [] for s in STATEMENTS for m in modes}
        for _ in range(args.rounds):
            # Interleaved, so a burst of load on the machine falls on every case alike.
            for statement in STATEMENTS:
                for mode, parent in modes.items():
                    times[statement, mode].append(measure(statement, parent, bytecode=mode == "bytecode"))

    print(f"{args.package}: import time after Django, ms; {args.rounds} fresh interpreters per case")
    print(f"  {'statement':<46} {'loaded from':<9} {'median':>7} {'fastest':>8}")
    for (statement, mode), values in times.items():
        median = statistics.median(values)
        mark = "" if median < TARGET_MS else f"  (over the {TARGET_MS:.0f} ms target)"
        print(f"  {statement:<46} {mode:<9} {median:>7.1f} {min(values):>8.1f}{mark}")


if __name__ == "__main__":
    main()
