"""gunicorn --preload under load: failed requests and the sessions each process used (PostgreSQL).

    .venv/bin/python benchmarks/forks.py [--requests 600] [--clients 12] [--workers 3]
        [--url postgresql://postgres@127.0.0.1:5432/test] [--package-path /work/main]

For each worker class (sync; gthread with 4 threads) and each connection strategy
(persistent; `pool`), gunicorn serves a project whose master connects while it
preloads the application; `--clients` threads of httpx clients send `--requests`
requests to a view that answers with its worker's pid and its session's backend pid.
Printed per run: requests sent and failed, sessions per worker, sessions served to more
than one process, whether the master's preloaded session still answers when it exits,
and the app's sessions on the server. `--package-path` runs another checkout of
django_dbconfig (an earlier commit) in the server, to compare.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tests.gunicorn_load import serve_and_load
    from tests.servers import free_port

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--package-path", default=None)
    parser.add_argument("--request-timeout", type=float, default=10.0)
    args = parser.parse_args()
    for worker_class, threads in (("sync", 1), ("gthread", 4)):
        for pool in (False, True):
            strategy = "pool" if pool else "persistent"
            label = f"{worker_class}{'' if threads == 1 else f' x{threads} threads'}, {strategy}"
            with tempfile.TemporaryDirectory() as root:
                load = serve_and_load(
                    Path(root), url=args.url, label=label, pool=pool, worker_class=worker_class,
                    workers=args.workers, threads=threads, requests=args.requests, clients=args.clients,
                    package_path=args.package_path, request_timeout=args.request_timeout,
                    free_port=free_port,
                )  # fmt: skip
            print(load.summary())
            for error in load.errors[:3]:
                print(f"    e.g. {error[:160]}")


if __name__ == "__main__":
    main()
