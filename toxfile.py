"""tox plugin: find the matrix's interpreters where pyenv installed them without activating them.

pyenv's `python3.10` shim runs only when 3.10 is an active pyenv version, so
virtualenv skips it. For each `py3X` environment this offers, after the
plain `python3.X`, the newest `$PYENV_ROOT/versions/3.X.*/bin/python3.X`:
no PATH edit and no `pyenv global` needed. Other interpreters are untouched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tox.config.loader.memory import MemoryLoader
from tox.plugin import impl

_FACTOR = re.compile(r"(?:^|-)py3(\d+)(?:-|$)")


def _pyenv_interpreters(minor: str) -> list[str]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = []
    for folder in (root / "versions").glob(f"3.{minor}.*"):
        patch = folder.name.removeprefix(f"3.{minor}.")
        executable = folder / "bin" / f"python3.{minor}"
        if patch.isdigit() and executable.is_file():
            found.append((int(patch), str(executable)))
    return [path for _, path in sorted(found, reverse=True)]


@impl
def tox_add_env_config(env_conf: Any, state: Any) -> None:
    match = _FACTOR.search(env_conf.name)
    if match is None:
        return
    fallbacks = _pyenv_interpreters(match[1])
    if fallbacks:
        env_conf.loaders.insert(0, MemoryLoader(base_python=[f"python3.{match[1]}", fallbacks[0]]))
