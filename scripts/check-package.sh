#!/usr/bin/env bash
# Build the sdist and wheel with exactly the setuptools version that
# pyproject.toml declares as its floor, check them with `twine check --strict`,
# show what they hold, and run a quick part of the test suite from the
# unpacked sdist. Prints the paths of the two files last.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
floor="$(.venv/bin/python - <<'PY'
import tomllib
requires = tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]
(setuptools,) = [r for r in requires if r.startswith("setuptools")]
print(setuptools.split(">=")[1])
PY
)"
echo "package: building with setuptools==$floor (the declared floor)"
python3 -m venv "$work/build-env"
"$work/build-env/bin/pip" install -q --disable-pip-version-check "setuptools==$floor" build
"$work/build-env/bin/python" -m build --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
"$work/build-env/bin/python" -c "import setuptools; assert setuptools.__version__ == '$floor', setuptools.__version__"
.venv/bin/twine check --strict "$work"/dist/*

wheel=("$work"/dist/*.whl)
sdist=("$work"/dist/*.tar.gz)
.venv/bin/python - "${wheel[0]}" "${sdist[0]}" <<'PY'
import sys, tarfile, zipfile
from email import message_from_string

wheel, sdist = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = message_from_string(zf.read(meta).decode())
with tarfile.open(sdist) as tf:
    members = [m.name.split("/", 1)[1] for m in tf.getmembers() if m.isfile()]
print(f"wheel: {len(names)} files")
for name in names:
    print("  ", name)
print(f"sdist: {len(members)} files; top level and test support:")
for name in sorted(members):
    if "/" not in name or name.startswith("tests/") and not name.startswith("tests/test_"):
        print("  ", name)
problems = []
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
    problems.append("the wheel has no LICENSE")
if metadata["License-Expression"] != "BSD-3-Clause" or metadata["License-File"] != "LICENSE":
    problems.append("the wheel's metadata lacks License-Expression or License-File")
urls = {u.split(",")[0].strip().lower() for u in metadata.get_all("Project-URL", [])}
for needed in ("source", "documentation", "changelog", "issues"):
    if needed not in urls:
        problems.append(f"no Project-URL {needed}")
for needed in ("LICENSE", "CHANGELOG.md", "tests/conftest.py", "tests/settings.py", "tests/helpers.py",
               "tests/servers.py", "tests/apps/__init__.py", "example_project/manage.py", "docs/checks.md"):
    if needed not in members:
        problems.append(f"the sdist lacks {needed}")
if any(".secrets/dbconfig.json" == m.rsplit("/", 2)[-2] + "/" + m.rsplit("/", 1)[-1] for m in members if m.count("/") >= 1):
    problems.append("the sdist holds a secrets file")
if problems:
    sys.exit("package: " + "; ".join(problems))
print("package: LICENSE, License-File, Project-URLs and the test support files are in place")
PY

# The sdist's own tests, as shipped: run from the unpacked sdist, importing its
# copy of the package (checked below), against the machine's servers.
mkdir "$work/unpacked"
tar -xzf "${sdist[0]}" -C "$work/unpacked"
src=("$work"/unpacked/*)
(
    cd "${src[0]}"
    py="$OLDPWD/.venv/bin/python"
    "$py" -c "import django_dbconfig, pathlib, sys; p = pathlib.Path(django_dbconfig.__file__).resolve(); assert str(p).startswith('${src[0]}'), p"
    "$py" -m pytest -q -p no:cacheprovider tests/test_layers.py tests/test_render.py tests/test_checks.py \
        tests/test_example_project.py tests/test_export.py tests/test_docs.py
)
