#!/usr/bin/env bash
# Mutation testing of the pure settings layer, on demand (not part of .ci/run).
#
# mutmut changes the modules of [tool.mutmut] only_mutate in pyproject.toml (conf/, core's
# keys, durations and errors, each family's settings.py, operations/export.py) one small
# change at a time, runs the server-free tests that reach the changed function against
# each mutant, in one worker process, quickest tests first (tests/mutation_order.py), and
# prints how many mutants the tests killed.
# No server is contacted: the tests marked postgresql, mariadb or slow are left out, and so
# is the property test (tests/test_properties.py), which scripts/test.sh runs.
#
#   bash scripts/mutation.sh                  every mutant of the layer, from scratch
#   bash scripts/mutation.sh --minutes 20     stop after 20 minutes (the counts say how many ran)
#   bash scripts/mutation.sh --keep           resume: mutants that have a result are not run again
#   bash scripts/mutation.sh --keep NAME...   run these mutants again (after a new test), e.g.
#                                             'django_dbconfig.core.durations.x_parse_duration__mutmut_3'
#
# The layer is 5,422 mutants. A whole run took 64 minutes (3,840 s) on 2026-12-05, on two
# cores shared with other work (load average 12 to 20, nice -n 19): mutmut runs the quickest
# first, and the last 600 or so, in the functions most tests reach (conf/config.py, layer.py,
# merge.py, sources.py), take a third of it; --minutes bounds a run and --keep resumes it.
# (Before the property test was left out, a surviving mutant of those functions took 13 to 29 s.)
# Results stay in mutants/ (git-ignored): `.venv/bin/mutmut results` lists the survivors,
# `.venv/bin/mutmut show NAME` shows one. scripts/mutation-equivalent.md lists the survivors
# that change no behaviour. Changing [tool.mutmut]'s test options or files makes mutmut
# forget every result: the next run starts from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
minutes=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --keep) keep=true ;;
        --minutes) minutes="$2"; shift ;;
        *) break ;;
    esac
    shift
done
[[ -x .venv/bin/mutmut ]] || bash scripts/setup.sh
$keep || rm -rf mutants

started=$SECONDS
limit=()
# SIGINT: mutmut stops its worker and keeps every result so far (--keep resumes).
[[ "$minutes" == 0 ]] || limit=(timeout --foreground --signal=INT "${minutes}m")
# CI would turn a missing server into a failure; these tests need none.
status=0
CI= "${limit[@]}" .venv/bin/mutmut run --max-children 1 "$@" >mutants.log 2>&1 || status=$?
elapsed=$((SECONDS - started))
if [[ $status != 0 && $status != 124 && $status != 130 ]]; then
    tail -n 40 mutants.log
    echo "mutmut failed (exit $status): the whole output is in mutants.log" >&2
    exit 1
fi
mkdir -p mutants && mv mutants.log mutants/run.log

.venv/bin/python - "$elapsed" <<'PY'
"""Count the mutants of each module by outcome (mutmut keeps them in mutants/**/*.meta)."""

import json
import sys
from collections import Counter
from pathlib import Path

elapsed = int(sys.argv[1])
# mutmut's exit codes per mutant: 1 and 3 the tests failed (killed), 0 they passed (survived),
# 33 no test reaches the function, 36 and -24 the tests ran out of time (killed), None not run.
OUTCOME = {0: "survived", 1: "killed", 3: "killed", 33: "no tests", 36: "timeout", -24: "timeout", None: "not run"}
COLUMNS = ("mutants", "killed", "timeout", "survived", "no tests", "not run")
total: Counter[str] = Counter()
print(f"{'module':48} " + " ".join(f"{c:>8}" for c in COLUMNS))
for meta in sorted(Path("mutants").glob("django_dbconfig/**/*.py.meta")):
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    if not codes:
        continue
    counts = Counter(OUTCOME.get(code, f"exit {code}") for code in codes.values())
    counts["mutants"] = len(codes)
    total.update(counts)
    name = str(meta.relative_to("mutants")).removesuffix(".meta")
    print(f"{name:48} " + " ".join(f"{counts[c]:>8}" for c in COLUMNS))
print(f"{'total':48} " + " ".join(f"{total[c]:>8}" for c in COLUMNS))
tested = total["killed"] + total["timeout"] + total["survived"] + total["no tests"]
if tested:
    score = 100 * (total["killed"] + total["timeout"]) / tested
    print(f"killed {score:.1f}% of the {tested} mutants run (no tests counts as survived) in {elapsed} s")
PY
