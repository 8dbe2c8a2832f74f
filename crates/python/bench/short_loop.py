"""The bench's short query from Python: a datafusion-python session with and
without dftrace, in one process, interleaved rounds.

    python crates/python/bench/short_loop.py [--rounds 15] [--runs 100] [--preset production-lean]

Needs the package installed (`pip install ./crates/python`: a release build).
Prints, for the fixed query and for one with a fresh literal each run, the
median over rounds of (time with dftrace / time without) and its percentile
bootstrap 95 % interval, as `cargo xtask bench` reports the Rust figures.
Spans go to dftrace's file sink in a temporary directory (written, as a
collector's would be, not discarded).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import SessionContext

import dftrace

SHORT_QUERY = (
    "select n_name, r_name, count(*) as c from nation join region "
    "on n_regionkey = r_regionkey where n_nationkey % 2 = 0 group by n_name, r_name "
    "order by n_name"
)


def fresh_short_query(run: int) -> str:
    return (
        "select n_name, r_name, count(*) as c from nation join region "
        "on n_regionkey = r_regionkey where n_nationkey % 2 = 0 "
        f"and n_comment <> 'fresh literal {run}' group by n_name, r_name order by n_name"
    )


def write_tables(data: Path) -> None:
    """TPC-H's nation (25 rows) and region (5 rows), as parquet."""
    regions = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
    pq.write_table(
        pa.table(
            {
                "r_regionkey": pa.array(range(5), pa.int32()),
                "r_name": regions,
                "r_comment": [f"region {i}" for i in range(5)],
            }
        ),
        data / "region.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "n_nationkey": pa.array(range(25), pa.int32()),
                "n_name": [f"NATION {i:02}" for i in range(25)],
                "n_regionkey": pa.array([i % 5 for i in range(25)], pa.int32()),
                "n_comment": [f"nation {i}" for i in range(25)],
            }
        ),
        data / "nation.parquet",
    )


def session(data: Path) -> SessionContext:
    ctx = SessionContext()
    ctx.register_parquet("nation", str(data / "nation.parquet"))
    ctx.register_parquet("region", str(data / "region.parquet"))
    return ctx


def bootstrap(samples: list[float], resamples: int = 2000) -> tuple[float, float, float]:
    rng = random.Random(7)
    medians = sorted(
        statistics.median(rng.choices(samples, k=len(samples))) for _ in range(resamples)
    )
    return (
        statistics.median(samples),
        medians[int(0.025 * resamples)],
        medians[int(0.975 * resamples) - 1],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--preset", default="production-lean")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        write_tables(work)
        telemetry = dftrace.init(
            args.preset, settings={"export.sink": "file", "export.file.dir": str(work / "traces")}
        )
        plain = session(work)
        traced = dftrace.instrument(session(work))
        counter = iter(range(10**9))
        loops = {
            "short loop": lambda ctx: SHORT_QUERY,
            "short loop, fresh literal each run": lambda ctx: fresh_short_query(next(counter)),
        }

        def timed(ctx, query) -> float:
            started = time.perf_counter()
            for _ in range(args.runs):
                ctx.sql(query(ctx)).collect()
            return time.perf_counter() - started

        for name, query in loops.items():
            for ctx in (plain, traced):  # warm up
                timed(ctx, query)
            ratios = []
            for round_ in range(args.rounds):
                order = (plain, traced) if round_ % 2 == 0 else (traced, plain)
                seconds = {id(ctx): timed(ctx, query) for ctx in order}
                ratios.append(seconds[id(traced)] / seconds[id(plain)])
            median, low, high = bootstrap(ratios)
            print(
                f"{args.preset}, {name}: {median:.3f} [{low:.3f}-{high:.3f}] "
                f"({args.rounds} rounds of {args.runs} runs)"
            )
        report = telemetry.shutdown()
        print(f"spans: {report['summary']}")


if __name__ == "__main__":
    main()
