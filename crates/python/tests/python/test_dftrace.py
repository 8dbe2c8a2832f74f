"""dftrace on a datafusion-python session, as a Python application uses it.

Each test runs `host.py` in a child process (telemetry is once per process)
and reads what dftrace's file sink exported: OTLP-JSON lines, the bytes a
collector would receive.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dftrace

HOST = Path(__file__).with_name("host.py")
QUERY_SPAN = "dftrace.query"
# OTLP JSON writes enums as numbers: STATUS_CODE_ERROR.
STATUS_ERROR = 2


def run_host(scenario: str, work: Path, env: dict | None = None, **settings) -> dict:
    done = subprocess.run(
        [sys.executable, str(HOST), scenario, str(work), json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"host.py {scenario} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def exported_bytes(work: Path) -> bytes:
    files = sorted((work / "traces").iterdir())
    assert files, "dftrace wrote no file"
    return b"".join(path.read_bytes() for path in files)


def attribute(value: dict):
    (kind, raw), = value.items()
    return int(raw) if kind == "intValue" else raw


def spans(work: Path) -> list[dict]:
    out = []
    for path in sorted((work / "traces").glob("*.jsonl")):
        if path.name.endswith(".metrics.jsonl"):
            continue
        for line in path.read_text().splitlines():
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    for span in scope["spans"]:
                        span["attrs"] = {a["key"]: attribute(a["value"]) for a in span["attributes"]}
                        span["types"] = {a["key"]: next(iter(a["value"])) for a in span["attributes"]}
                        out.append(span)
    return out


def traces(all_spans: list[dict]) -> dict[str, list[dict]]:
    by_trace: dict[str, list[dict]] = {}
    for span in all_spans:
        by_trace.setdefault(span["traceId"], []).append(span)
    return by_trace


def under_root(trace: list[dict]) -> dict:
    """The trace's one root; asserts every other span descends from it."""
    roots = [s for s in trace if s["name"] == QUERY_SPAN]
    assert len(roots) == 1, f"one root per trace, got {len(roots)}"
    root = roots[0]
    by_id = {s["spanId"]: s for s in trace}
    for span in trace:
        seen = span
        while seen is not root:
            parent = seen.get("parentSpanId")
            assert parent in by_id, f"{span['name']} is not under the root"
            seen = by_id[parent]
    return root


def same_rows(got: list, expected: list) -> bool:
    # Float sums depend on the order partitions meet in, which varies from
    # run to run with or without dftrace.
    return all(
        len(g) == len(e)
        and all(
            gv == pytest.approx(ev, rel=1e-9) if isinstance(ev, float) else gv == ev
            for gv, ev in zip(g, e)
        )
        for g, e in zip(got, expected)
    ) and len(got) == len(expected)


# The package's default (`metrics-only`: operator spans from the plan's
# metrics, nothing between the session's operators) and a wrapper around
# each operator (`deferred`, a Rust host's default).
@pytest.mark.parametrize("mode", [None, "deferred"])
def test_results_are_unchanged_and_each_statement_is_one_trace(tmp_path, mode):
    settings = {"rules.operator_spans": mode} if mode else {}
    out = run_host("tpch", tmp_path, preset="production-lean", **settings)
    for name, query in out["queries"].items():
        assert same_rows(query["collected"], query["expected"]), name
        assert same_rows(query["to_arrow_table"], query["expected"]), name
        if mode is None:
            # Nothing of dftrace's between the session's nodes: the session
            # is shown its own plan under dftrace's top node, as it ran.
            for traced in query["traced_names"]:
                assert traced == query["plain_names"], name
        else:
            assert all("FFI_ExecutionPlan" in traced for traced in query["traced_names"]), name
    all_spans = spans(tmp_path)
    by_trace = traces(all_spans)
    roots = [s for s in all_spans if s["name"] == QUERY_SPAN]
    assert len(roots) == out["statements"], "one root per statement"
    assert len(by_trace) == out["statements"], "one trace per statement"
    assert out["shutdown"]["dropped"] == 0, out["shutdown"]

    runs = [run for q in out["queries"].values() for run in q["runs"]]
    for trace in by_trace.values():
        root = under_root(trace)
        assert root["status"].get("code") != STATUS_ERROR
        operators = sorted(
            (s for s in trace if "dftrace.operator.index" in s["attrs"]),
            key=lambda s: s["attrs"]["dftrace.operator.index"],
        )
        assert operators, "operator spans under the root"
        start, end = int(root["startTimeUnixNano"]), int(root["endTimeUnixNano"])
        for span in operators:
            assert span["attrs"]["dftrace.operator.self_time_ns"] >= 0
            span_start, span_end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
            # An operator's stream dropped after a limit was reached ends
            # with its parent: within the root all the same.
            assert start <= span_start <= span_end <= end, (span["name"], start, end, span_start, span_end)
        # Each operator's own interval, not the top's.
        assert any(s["startTimeUnixNano"] != operators[0]["startTimeUnixNano"] for s in operators[1:])
        for span in operators:
            if "datafusion.metrics.output_rows" in span["attrs"]:
                assert span["types"]["datafusion.metrics.output_rows"] == "intValue"
        traced = [
            [span_operator(s["name"]), s["attrs"].get("datafusion.metrics.output_rows")]
            for s in operators
        ]
        # Operator for operator the plan the session ran, with the row
        # counts its own metrics (EXPLAIN ANALYZE's figures) report.
        matching = [run for run in runs if same_operators(traced, run)]
        assert matching, f"operators {traced} match no run of {runs}"
        runs.remove(matching[0])
    assert not runs, "a trace per run"


def span_operator(name: str) -> str:
    # A TopK sort's span says so: `SortExec(TopK)`.
    return name.split("(")[0]


def same_operators(traced: list, run: list) -> bool:
    if [name for name, _ in traced] != [name for name, _ in run]:
        return False
    both = [(t, r) for (_, t), (_, r) in zip(traced, run) if t is not None and r is not None]
    return bool(both) and all(t == r for t, r in both)


def test_a_failing_statement_raises_the_same_error_and_the_root_says_error(tmp_path):
    out = run_host("failing", tmp_path)
    assert out["plain"] is not None, "the statement fails without dftrace"
    plain_type, plain_message = out["plain"]
    traced_type, traced_message = out["traced"]
    assert traced_type == plain_type
    # datafusion-ffi carries an error across the boundary as its text, under
    # an "FFI error: " prefix per crossing; the error itself is unchanged.
    cause = plain_message.removeprefix("DataFusion error: ")
    assert traced_message == "DataFusion error: FFI error: FFI error: " + cause
    roots = [s for s in spans(tmp_path) if s["name"] == QUERY_SPAN]
    assert len(roots) == 1
    assert roots[0]["status"].get("code") == STATUS_ERROR, roots[0]["status"]


SECRETS = [b"tok-SECRET-1", b"LIT-SECRET-2", b"LIT-SECRET-3"]


# Both ways operator spans are made: the package's default (previews of the
# top operator) and a wrapper around each operator (previews of each).
@pytest.mark.parametrize("mode", [None, "deferred"])
def test_no_literal_or_denied_value_is_exported(tmp_path, mode):
    settings = {"rules.operator_spans": mode} if mode else {}
    out = run_host("secrets", tmp_path, preset="maximal", **settings)
    assert out["rows"] == [[1, "tok-SECRET-1", "LIT-SECRET-2"], [2, "tok-SECRET-1b", "LIT-SECRET-2"]]
    exported = exported_bytes(tmp_path)
    assert b'"datafusion.preview"' in exported, "maximal takes previews"
    for secret in SECRETS:
        assert secret not in exported, secret


@pytest.mark.parametrize("mode", [None, "deferred"])
def test_operator_spans_come_from_the_plans_metrics_unless_asked(tmp_path, mode):
    # With nothing between the session's operators (the default) only the
    # plan's top is seen running, so only it has a preview; with a wrapper
    # around each operator, each that produced rows does.
    settings = {"rules.operator_spans": mode} if mode else {}
    run_host("secrets", tmp_path, preset="maximal", **settings)
    operators = [s for s in spans(tmp_path) if "dftrace.operator.index" in s["attrs"]]
    assert len(operators) >= 3, [s["name"] for s in operators]
    with_preview = [s["name"] for s in operators if "datafusion.preview" in s["attrs"]]
    if mode is None:
        assert len(with_preview) == 1, with_preview
    else:
        assert len(with_preview) > 1, with_preview


@pytest.mark.parametrize("mode", [None, "deferred"])
def test_the_secrets_check_can_fail(tmp_path, mode):
    # Previews without redaction: the same check finds the denied column's
    # values. (The literals have no way out of a Python session: the SQL
    # text and the operators' descriptions do not cross datafusion-ffi, and
    # a column computed from a literal is masked whatever the policy, its
    # lineage being unknown behind the boundary.)
    settings = {"rules.operator_spans": mode} if mode else {}
    run_host("secrets", tmp_path, preset="maximal", **{"preview.policy": "none"}, **settings)
    exported = exported_bytes(tmp_path)
    assert SECRETS[0] in exported


def test_the_root_is_a_child_of_the_applications_span(tmp_path):
    out = run_host("python_parent", tmp_path)
    roots = [s for s in spans(tmp_path) if s["name"] == QUERY_SPAN]
    assert len(roots) == 1
    assert roots[0]["traceId"] == out["trace_id"]
    assert roots[0]["parentSpanId"] == out["span_id"]


def test_instrumenting_a_session_twice_traces_each_operator_once(tmp_path):
    out = run_host("instrumented_twice", tmp_path)
    assert out["rows"] == [[4], [6]]
    all_spans = spans(tmp_path)
    roots = [s for s in all_spans if s["name"] == QUERY_SPAN]
    assert len(roots) == 1
    indexes = [s["attrs"]["dftrace.operator.index"] for s in all_spans if "dftrace.operator.index" in s["attrs"]]
    assert indexes and len(indexes) == len(set(indexes)), indexes


@pytest.fixture
def s3_endpoint():
    """A real S3 server (moto), as `cargo xtask test` installs it."""
    binary = os.environ.get("DFTRACE_MOTO_BIN")
    assert binary, (
        "DFTRACE_MOTO_BIN is not set: run `cargo xtask test`, which installs moto[server] "
        "into target/tools/venv and sets it"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Ready when it accepts a connection; the deadline only bounds a hang.
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "moto_server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not listen within 60 s"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def test_a_table_behind_the_applications_s3_store_reads_the_same(tmp_path, s3_endpoint):
    # datafusion-ffi rebuilds a task context it receives with a default
    # runtime environment, without the application's object stores; dftrace
    # hands the session its own context back, so its scan finds the store.
    out = run_host("s3", tmp_path, env={"TEST_S3_ENDPOINT": s3_endpoint})
    assert out["plain"] == [[0, 60.0], [1, 40.0]]
    assert out["traced"] == out["plain"]
    roots = [s for s in spans(tmp_path) if s["name"] == QUERY_SPAN]
    assert len(roots) == 1
    assert roots[0]["status"].get("code") != STATUS_ERROR


def test_bad_settings_raise_dftrace_error_naming_what_is_accepted():
    with pytest.raises(dftrace.DftraceError, match="accepted"):
        dftrace.init("no-such-preset")
    with pytest.raises(dftrace.DftraceError, match="export.sink"):
        dftrace.init(export__sink="carrier-pigeon")
    with pytest.raises(dftrace.DftraceError, match="init"):
        dftrace.instrument(object())


def readme_snippet() -> str:
    readme = (Path(__file__).parents[4] / "README.md").read_text()
    section = readme.split("## Use from Python", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_snippet_runs_and_exports_a_trace(tmp_path):
    env = {
        **os.environ,
        # Where the default sink (a file, without an OTLP endpoint) writes.
        "DFTRACE_EXPORT__FILE__DIR": str(tmp_path / "traces"),
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    done = subprocess.run(
        [sys.executable, "-c", readme_snippet()],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "spans were exported" in done.stdout, done.stdout
    roots = [s for s in spans(tmp_path) if s["name"] == QUERY_SPAN]
    assert len(roots) == 1


def test_spans_are_flushed_at_exit_without_shutdown(tmp_path):
    script = f"""
import dftrace
from datafusion import SessionContext
dftrace.init(export__sink="file", export__file__dir={str(tmp_path / "traces")!r})
ctx = dftrace.instrument(SessionContext())
ctx.sql("SELECT 1 AS one").collect()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    roots = [s for s in spans(tmp_path) if s["name"] == QUERY_SPAN]
    assert len(roots) == 1
