"""Run Django's own tests against the shared servers with our engines and with Django's.

    .venv/bin/python -m django_suite [--parallel 2] [--only postgresql] [MODULE ...]
    (with scripts/ on PYTHONPATH; scripts/django-suite.sh does that)

Downloads the source distribution of the installed Django from PyPI once (kept
in .venv/django-suite/), then runs tests/runtests.py with settings whose two
aliases, `default` and `other`, are rendered by build_databases(): once as
rendered (this project's engines) and once with `engine` set to Django's own
backend, on PostgreSQL and on MariaDB. Prints the counts per module, ours
beside Django's, and lists every test that fails with both (the environment)
and with only one. Exits 1 when a test fails with our engines and passes with
Django's, confirmed by running it again with both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".venv" / "django-suite"
MODULES = (
    "backends",
    "multiple_database",
    "transactions",
    "transaction_hooks",
    "select_for_update",
    "requests_tests",
    "handlers",
    "async",
)
SERVERS = {"postgresql": "PostgreSQL 127.0.0.1:5432", "mariadb": "MariaDB 127.0.0.1:3306"}
DJANGO_ENGINES = {"postgresql": "django.db.backends.postgresql", "mariadb": "django.db.backends.mysql"}
# Extra passes with other alias keys: Django's pool tests need CONN_MAX_AGE 0, and
# build_databases() renders 60 s by default.
EXTRA_PASSES = {"postgresql": [("backends.postgresql", {"conn_max_age": 0})]}
# Why a test fails with both engines, where the error alone does not say it.
KNOWN_REASONS = {
    "Pooling doesn't support persistent connections": (
        "build_databases() renders CONN_MAX_AGE 60; the pass with conn_max_age 0 runs it"
    ),
    "Unknown or incorrect time zone": "the server has no time zone tables (mariadb-tzinfo-to-sql)",
}
FAILED = ("failure", "error", "unexpected success")
PASSED = ("success", "expected failure")

Outcomes = dict[str, list[str]]


@dataclass
class Run:
    """One runtests.py run: a server, an engine (empty: as build_databases() renders it)."""

    server: str
    engine: str
    keys: dict[str, object]
    outcomes: Outcomes
    seconds: float


def source_tree() -> Path:
    """Django's source tree for the installed version, downloaded once."""
    import django

    version = django.get_version()
    tree = CACHE / f"django-{version}"
    if (tree / "tests" / "runtests.py").is_file():
        return tree
    downloads = CACHE / "downloads"
    print(f"downloading Django {version}'s source distribution from PyPI...", file=sys.stderr)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "--no-binary", ":all:", "--no-deps", "--dest", str(downloads), f"django=={version}"],
        check=True,
    )
    archive = next(path for path in downloads.glob("*.tar.gz") if version in path.name)
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(CACHE, filter="data")
        else:  # Python without extraction filters: the archive comes from PyPI over TLS.
            tar.extractall(CACHE)  # noqa: S202
    if top != tree.name:
        (CACHE / top).rename(tree)
    return tree


def run_tests(
    tree: Path,
    server: str,
    engine: str,
    labels: list[str],
    *,
    parallel: int,
    keys: dict[str, object] | None = None,
) -> Run:
    """tests/runtests.py with our settings (plus alias `keys`); the outcome of every test it ran."""
    label = "django" if engine else "ours"
    with tempfile.TemporaryDirectory(prefix="django-suite-") as tmp:
        results, log = Path(tmp) / "results.json", Path(tmp) / "output.log"
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), os.environ.get("PYTHONPATH", "")]),
            "DJANGO_SUITE_SERVER": server,
            "DJANGO_SUITE_ENGINE": engine,
            # Test databases are test_djsuite_<pid>_<server>_<engine>_<alias>[_N]: nobody else's.
            "DJANGO_SUITE_RUN": f"{os.getpid()}_{server[:2]}_{label}",
            "DJANGO_SUITE_RESULTS": str(results),
            "DJANGO_SUITE_KEYS": json.dumps(keys or {}),
        }
        command = [sys.executable, "runtests.py", "--settings=django_suite.settings", "--noinput"]
        command += [f"--parallel={parallel}", *labels]
        start = time.monotonic()
        with log.open("w") as output:
            subprocess.run(
                command, cwd=tree / "tests", env=env, stdout=output, stderr=subprocess.STDOUT, check=False
            )
        seconds = time.monotonic() - start
        if not results.is_file():
            tail = log.read_text(errors="replace").splitlines()[-40:]
            raise SystemExit(f"runtests.py ({server}, {label}) ended without results:\n" + "\n".join(tail))
        return Run(server, engine, keys or {}, json.loads(results.read_text()), seconds)


def module_of(test_id: str) -> str:
    """`backends.base.test_base.X.test_y` -> `backends`; also `setUpClass (backends.x.Y)`."""
    if "(" in test_id:
        test_id = test_id[test_id.index("(") + 1 : test_id.rindex(")")]
    return test_id.split(".")[0]


def label_of(test_id: str) -> str:
    """What runtests.py accepts to run that test (or that class, for a class-level error)."""
    if "(" in test_id:
        return test_id[test_id.index("(") + 1 : test_id.rindex(")")]
    return test_id


def counts(outcomes: Outcomes, module: str) -> tuple[int, int, int]:
    """Passed, failed, skipped in one module."""
    tally = Counter(outcome for test, (outcome, _) in outcomes.items() if module_of(test) == module)
    return (
        sum(tally[name] for name in PASSED),
        sum(tally[name] for name in FAILED),
        tally["skipped"],
    )


def failing(outcomes: Outcomes) -> set[str]:
    return {test for test, (outcome, _) in outcomes.items() if outcome in FAILED}


def report(server: str, ours: Run, theirs: Run, modules: list[str]) -> list[str]:
    """The counts table, then the tests that fail with both engines and with Django's only."""
    keys = f", alias keys {json.dumps(ours.keys)}" if ours.keys else ""
    lines = [
        f"{SERVERS[server]}{keys}: ours ({ours.seconds:.0f} s) beside {DJANGO_ENGINES[server]} "
        f"({theirs.seconds:.0f} s)",
        f"  {'module':<20} {'passed':>15} {'failed':>11} {'skipped':>11}",
    ]
    totals = [0] * 6
    for module in modules:
        a, b = counts(ours.outcomes, module), counts(theirs.outcomes, module)
        row = [a[0], b[0], a[1], b[1], a[2], b[2]]
        totals = [t + n for t, n in zip(totals, row, strict=True)]
        lines.append(f"  {module:<20} " + format_row(row))
    lines.append(f"  {'total':<20} " + format_row(totals))
    lines.append("  (each column: ours / Django's engine)")
    both = sorted(failing(ours.outcomes) & failing(theirs.outcomes))
    if both:
        lines.append(f"  fail with both engines (the environment, not the engine): {len(both)}")
        lines += [f"    {test}\n      {explain(ours.outcomes[test][1])}" for test in both]
    theirs_only = sorted(failing(theirs.outcomes) - failing(ours.outcomes))
    if theirs_only:
        lines.append(f"  fail with Django's engine only: {len(theirs_only)}")
        lines += [f"    {test}\n      {theirs.outcomes[test][1]}" for test in theirs_only]
    return lines


def explain(error: str) -> str:
    """The error, and why it happens when that is known."""
    reasons = [reason for text, reason in KNOWN_REASONS.items() if text in error]
    return error + "".join(f"\n      ({reason})" for reason in reasons)


def format_row(row: list[int]) -> str:
    pairs = [f"{row[i]:,} / {row[i + 1]:,}" for i in range(0, 6, 2)]
    return f"{pairs[0]:>15} {pairs[1]:>11} {pairs[2]:>11}"


def regressions(tree: Path, server: str, ours: Run, theirs: Run) -> list[str]:
    """Tests failing with ours and passing with Django's, still so when run again with both."""
    suspects = sorted(
        test
        for test in failing(ours.outcomes)
        if theirs.outcomes.get(test, ["missing"])[0] in (*PASSED, "skipped")
    )
    if not suspects:
        return []
    labels = sorted({label_of(test) for test in suspects})
    print(f"  running {len(labels)} test(s) that failed with ours only again...", file=sys.stderr)
    again_ours = run_tests(tree, server, "", labels, parallel=1, keys=ours.keys)
    again_theirs = run_tests(tree, server, DJANGO_ENGINES[server], labels, parallel=1, keys=ours.keys)
    found = []
    for test in suspects:
        mine = again_ours.outcomes.get(test, ["missing", ""])
        django_s = again_theirs.outcomes.get(test, ["missing", ""])
        if mine[0] in FAILED and django_s[0] not in FAILED:
            found.append(f"{test} ({SERVERS[server]})\n      {mine[1]}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("modules", nargs="*", help="Django test modules or labels (default: the list)")
    parser.add_argument("--parallel", type=int, default=2, help="runtests.py processes per run")
    parser.add_argument("--only", choices=tuple(SERVERS), help="one server only")
    args = parser.parse_args(argv)
    args.labels_given = bool(args.modules)
    args.modules = args.modules or list(MODULES)

    import django

    tree = source_tree()
    servers = [server for server in SERVERS if args.only in (None, server)]
    print(
        f"Django {django.get_version()}'s own tests ({tree / 'tests' / 'runtests.py'}), "
        f"aliases default and other rendered by build_databases(): {' '.join(args.modules)}"
    )
    found: list[str] = []
    for server in servers:
        passes: list[tuple[list[str], dict[str, object]]] = [(args.modules, {})]
        if not args.labels_given:
            passes += [([label], keys) for label, keys in EXTRA_PASSES.get(server, [])]
        for labels, keys in passes:
            print(f"running on {SERVERS[server]}: {' '.join(labels)} {keys or ''}", file=sys.stderr)
            ours = run_tests(tree, server, "", labels, parallel=args.parallel, keys=keys)
            engine = DJANGO_ENGINES[server]
            theirs = run_tests(tree, server, engine, labels, parallel=args.parallel, keys=keys)
            modules = list(dict.fromkeys(module_of(label) for label in labels))
            print("\n" + "\n".join(report(server, ours, theirs, modules)), flush=True)
            found += regressions(tree, server, ours, theirs)
    if found:
        print(f"\nFAILED: {len(found)} test(s) fail with our engines and pass with Django's:")
        print("\n".join(f"  {line}" for line in found))
        return 1
    print("\nOK: no test fails with our engines that passes with Django's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
