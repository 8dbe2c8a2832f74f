"""A Python application using datafusion-python, run by the tests as a child
process: dftrace's telemetry is once per process, so each configuration
gets a process of its own.

    python host.py <scenario> <work dir> <settings as JSON>

The scenario writes what it saw (results, errors) as JSON on stdout; the
spans are in ``<work dir>/traces``, written by dftrace's file sink.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import SessionContext

import dftrace

# TPC-H's shapes, at a size that runs in a second: a scan with a filter and
# a grouped aggregate (Q1, Q6), a join with a grouped top-N (Q3), a join of
# three with a semi join (Q4-like), and a sort with a limit.
QUERIES = {
    "q1": """
        SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty,
               sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
               avg(l_discount) AS avg_disc, count(*) AS count_order
        FROM lineitem WHERE l_shipdate <= DATE '1998-09-02'
        GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus""",
    "q3": """
        SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue,
               o_orderdate
        FROM orders JOIN lineitem ON l_orderkey = o_orderkey
        WHERE o_orderdate < DATE '1995-03-15' AND l_shipdate > DATE '1995-03-15'
        GROUP BY l_orderkey, o_orderdate
        ORDER BY revenue DESC, o_orderdate, l_orderkey LIMIT 10""",
    "q4": """
        SELECT o_orderpriority, count(*) AS order_count FROM orders
        WHERE o_orderdate >= DATE '1993-07-01' AND o_orderdate < DATE '1993-10-01'
          AND EXISTS (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey
                      AND l_quantity > 10)
        GROUP BY o_orderpriority ORDER BY o_orderpriority""",
    "q6": """
        SELECT sum(l_extendedprice * l_discount) AS revenue FROM lineitem
        WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01'
          AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24""",
    "top": "SELECT o_orderkey, o_orderdate FROM orders ORDER BY o_orderdate DESC, o_orderkey LIMIT 5",
}


def write_tables(data: Path) -> None:
    """Deterministic TPC-H-like `orders` and `lineitem` as parquet."""
    rng = random.Random(7)
    start = date(1992, 1, 1)
    orders = 2000
    order_dates = [start + timedelta(days=rng.randrange(2400)) for _ in range(orders)]
    pq.write_table(
        pa.table(
            {
                "o_orderkey": pa.array(range(1, orders + 1), pa.int64()),
                "o_custkey": pa.array([rng.randrange(1, 300) for _ in range(orders)], pa.int64()),
                "o_orderdate": pa.array(order_dates, pa.date32()),
                "o_orderpriority": [
                    rng.choice(["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"])
                    for _ in range(orders)
                ],
            }
        ),
        data / "orders.parquet",
    )
    rows = []
    for key, ordered in zip(range(1, orders + 1), order_dates):
        for _ in range(rng.randrange(1, 8)):
            rows.append(
                (
                    key,
                    float(rng.randrange(1, 51)),
                    round(rng.uniform(900, 105000), 2),
                    rng.randrange(0, 11) / 100,
                    rng.randrange(0, 9) / 100,
                    rng.choice("ANR"),
                    rng.choice("OF"),
                    ordered + timedelta(days=rng.randrange(1, 122)),
                )
            )
    names = [
        "l_orderkey",
        "l_quantity",
        "l_extendedprice",
        "l_discount",
        "l_tax",
        "l_returnflag",
        "l_linestatus",
        "l_shipdate",
    ]
    columns = list(zip(*rows))
    types = [pa.int64(), pa.float64(), pa.float64(), pa.float64(), pa.float64(), pa.string(), pa.string(), pa.date32()]
    table = pa.table({n: pa.array(c, t) for n, c, t in zip(names, columns, types)})
    # Two files, so the scan has more than one.
    half = table.num_rows // 2
    (data / "lineitem").mkdir(exist_ok=True)
    pq.write_table(table.slice(0, half), data / "lineitem" / "part-0.parquet")
    pq.write_table(table.slice(half), data / "lineitem" / "part-1.parquet")


def session(data: Path) -> SessionContext:
    ctx = SessionContext()
    ctx.register_parquet("orders", str(data / "orders.parquet"))
    ctx.register_parquet("lineitem", str(data / "lineitem"))
    return ctx


def table_json(table: pa.Table) -> list:
    return [list(row.values()) for row in table.to_pylist()]


def operator_rows(plan) -> list:
    """[name, output_rows] of each operator of an executed plan, top down:
    the figures EXPLAIN ANALYZE prints (there rounded, here exact)."""
    out = []

    def walk(node) -> None:
        metrics = node.metrics()
        name = node.display().split(":")[0].strip()
        out.append([name, metrics.output_rows if metrics is not None else None])
        for child in node.children():
            walk(child)

    walk(plan)
    return out


def tpch(work: Path, telemetry: dftrace.Telemetry) -> dict:
    """Each query through a plain session and an instrumented one, with
    `collect()` and `to_arrow_table()`."""
    data = work / "data"
    data.mkdir(exist_ok=True)
    write_tables(data)
    plain = session(data)
    traced = dftrace.instrument(session(data))
    out: dict = {"queries": {}, "statements": 0}
    for name, sql in QUERIES.items():
        df = plain.sql(sql)
        expected = pa.Table.from_batches(df.collect(), schema=df.schema())
        names = [name for name, _ in operator_rows(df.execution_plan())]
        collect = traced.sql(sql)
        collected = pa.Table.from_batches(collect.collect(), schema=expected.schema)
        arrow = traced.sql(sql)
        arrow_table = arrow.to_arrow_table()
        out["statements"] += 2
        out["queries"][name] = {
            "expected": table_json(expected),
            "collected": table_json(collected),
            "to_arrow_table": table_json(arrow_table),
            # What datafusion-python reports for each traced run (its plan
            # starts with dftrace's session node), under the operators'
            # names in the plain run (behind the boundary they are FFI
            # nodes). Row counts vary from run to run: a scan's partitions
            # share its files, so each run splits them its own way.
            "runs": [
                [[n, rows] for n, (_, rows) in zip(names, operator_rows(run.execution_plan())[1:])]
                for run in (collect, arrow)
            ],
            # The plan as the session shows it (EXPLAIN's nodes): its own
            # nodes, or dftrace's as FFI nodes.
            "plain_names": names,
            "traced_names": [
                [name for name, _ in operator_rows(run.execution_plan())[1:]] for run in (collect, arrow)
            ],
        }
    return out


def failing(work: Path, telemetry: dftrace.Telemetry) -> dict:
    """A statement that fails while it runs, with and without dftrace."""
    sql = "SELECT CAST(s AS INT) AS n FROM t"
    messages = []
    for instrumented in (False, True):
        ctx = SessionContext()
        if instrumented:
            dftrace.instrument(ctx)
        ctx.from_pydict({"s": ["1", "2", "not a number"]}, name="t")
        try:
            ctx.sql(sql).collect()
            messages.append(None)
        except Exception as error:  # the exception the application gets
            messages.append([type(error).__name__, str(error)])
    return {"plain": messages[0], "traced": messages[1]}


def secrets(work: Path, telemetry: dftrace.Telemetry) -> dict:
    """Data under a denied column name and literals in the statement."""
    ctx = dftrace.instrument(SessionContext())
    ctx.from_pydict(
        {
            "id": [1, 2, 3],
            "api_token": ["tok-SECRET-1", "tok-SECRET-1b", "tok-SECRET-1c"],
            "note": ["a", "b", "c"],
        },
        name="accounts",
    )
    rows = ctx.sql(
        "SELECT id, api_token, 'LIT-SECRET-2' AS tag FROM accounts "
        "WHERE note <> 'LIT-SECRET-3' AND id < 3 ORDER BY id"
    ).to_arrow_table()
    return {"rows": table_json(rows)}


def python_parent(work: Path, telemetry: dftrace.Telemetry) -> dict:
    """A query inside a span of the application's OpenTelemetry tracer."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("orders-service")
    ctx = dftrace.instrument(SessionContext())
    ctx.from_pydict({"a": [1, 2, 3]}, name="t")
    with tracer.start_as_current_span("request") as span:
        ctx.sql("SELECT sum(a) FROM t").collect()
        context = span.get_span_context()
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def instrumented_twice(work: Path, telemetry: dftrace.Telemetry) -> dict:
    """`instrument` called twice on one session."""
    ctx = dftrace.instrument(dftrace.instrument(SessionContext()))
    ctx.from_pydict({"a": [1, 2, 3]}, name="t")
    rows = ctx.sql("SELECT a * 2 AS b FROM t WHERE a > 1 ORDER BY b").to_arrow_table()
    return {"rows": table_json(rows)}


def s3(work: Path, telemetry: dftrace.Telemetry) -> dict:
    """A parquet table behind an S3 store the application registered (the
    endpoint of an S3 server in `TEST_S3_ENDPOINT`)."""
    import io
    import os

    import boto3
    from datafusion.object_store import AmazonS3

    endpoint = os.environ["TEST_S3_ENDPOINT"]
    keys = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys)
    client.create_bucket(Bucket="lake")
    data = io.BytesIO()
    pq.write_table(pa.table({"k": [1, 2, 3, 4], "v": [10.0, 20.0, 30.0, 40.0]}), data)
    client.put_object(Bucket="lake", Key="facts/part-0.parquet", Body=data.getvalue())

    def session(instrumented: bool) -> SessionContext:
        ctx = SessionContext()
        store = AmazonS3(
            bucket_name="lake",
            region="us-east-1",
            access_key_id="test",
            secret_access_key="test",
            endpoint=endpoint,
            allow_http=True,
        )
        ctx.register_object_store("s3://", store, "lake")
        if instrumented:
            dftrace.instrument(ctx)
        ctx.register_parquet("facts", "s3://lake/facts/")
        return ctx

    sql = "SELECT k % 2 AS parity, sum(v) AS total FROM facts GROUP BY k % 2 ORDER BY parity"
    return {
        "plain": table_json(session(False).sql(sql).to_arrow_table()),
        "traced": table_json(session(True).sql(sql).to_arrow_table()),
    }


SCENARIOS = {
    f.__name__: f for f in (tpch, failing, secrets, python_parent, instrumented_twice, s3)
}


def main() -> None:
    scenario, work, settings = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    settings = {
        "export.sink": "file",
        "export.file.dir": str(work / "traces"),
        **settings,
    }
    preset = settings.pop("preset", None)
    telemetry = dftrace.init(preset, settings=settings)
    out = SCENARIOS[scenario](work, telemetry)
    out["shutdown"] = telemetry.shutdown()
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
