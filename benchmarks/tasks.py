"""A Celery worker's task streams, with django_dbconfig.contrib.celery connected and not (PostgreSQL, Redis).

    .venv/bin/python benchmarks/tasks.py [--pairs 10]

For each pool (prefork, 2 processes; threads, 4 threads) and with the hooks on and off
(Celery's own Django fix-up off in both), a throwaway PostgreSQL and the machine's Redis:
write/read task pairs (tasks that start pinned to the primary by an earlier task's write),
a server restart in a stream of tasks (whether the first task after it succeeds), and
16 pooled tasks at once on a pool of 2 (failed ones).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tests.celery_worker import (
        HAS_POOL,
        Streams,
        celery_worker,
        pin_stream,
        pooled_stream,
        restart_stream,
    )
    from tests.servers import PostgresServer

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    server = PostgresServer().__enter__()
    try:
        for pool, concurrency in (("prefork", 2), ("threads", 4)):
            for hooks in (False, True):
                streams = Streams()
                with (
                    tempfile.TemporaryDirectory() as root,
                    celery_worker(
                        Path(root), url=server.url(), pool=pool, concurrency=concurrency, hooks=hooks
                    ) as worker,
                ):
                    pin_stream(worker, streams, pairs=args.pairs, check=False)
                    restart_stream(worker, server, streams)
                    if pool == "threads" and HAS_POOL:
                        pooled_stream(worker, streams)
                label = f"{pool} x{concurrency}, hooks {'on' if hooks else 'off'}"
                print(f"{label}: {streams.summary()}")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
