"""The run store on SQLite and on real PostgreSQL: runs, steps, events, recovery after a dead process."""
from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from exec_skills import make_plan, ref

from executor import ExecutionError, RunNotFound, RunStore, run_plan
from executor.owner import current_owner, owner_is_dead
from executor.store import normalize_url

PLAN = make_plan(("a", "numbers", {"n": 3}), ("b", "scale", {"values": ref("a.values")}),
                 ("c", "add", {"a": 1, "b": 2}))


def user() -> str:
    """A user name of its own per test: the PostgreSQL database is shared by the whole session."""
    return f"u{uuid.uuid4().hex[:8]}"


def principal(name: str | None = None):
    from governance import Principal

    return Principal(user=name or user(), roles=["analyst"], attributes={"region": "EU"})


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
    ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:///x/runs.db", "sqlite:///x/runs.db"),
])
def test_urls(given, expected):
    assert normalize_url(given) == expected


def test_a_bare_path_is_a_sqlite_file(tmp_path):
    store = RunStore(tmp_path / "deep" / "runs.db")
    assert store.url.startswith("sqlite:///") and (tmp_path / "deep" / "runs.db").exists()
    assert pickle.loads(pickle.dumps(store)).url == store.url


def test_run_and_steps_round_trip(store):
    who = principal()
    run_id = store.create_run(PLAN, who, prompt="count", backend="ray")
    record = store.get_run(run_id)
    assert (record.user, record.status, record.backend, record.prompt) == (who.user, "queued", "ray", "count")
    assert record.principal == who.model_dump(mode="json") and record.owner == current_owner()
    assert list(record.steps) == ["a", "b", "c"] and {s.status for s in record.steps.values()} == {"pending"}
    assert record.plan == PLAN.model_dump(mode="json")

    started = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    outputs = {"values": [0, 1, 2], "nested": {"x": 1.5, "ok": True, "none": None}}
    store.update_step(run_id, "a", "succeeded", started=started, finished=started + timedelta(seconds=2),
                      outputs=outputs)
    store.update_step(run_id, "b", "failed", error="nope", hint="do this", traceback="Traceback ...")
    store.finish_run(run_id, "failed", error="step 'b' failed", result={"failed_step": "b"})

    record = store.get_run(run_id)
    a, b = record.steps["a"], record.steps["b"]
    assert a.outputs == outputs and a.started == started and a.duration_s == 2.0
    assert (b.status, b.error, b.hint, b.traceback) == ("failed", "nope", "do this", "Traceback ...")
    assert record.status == "failed" and record.result == {"failed_step": "b"} and record.failed_step == "b"
    assert record.updated >= record.created and record.created.tzinfo is not None


def test_list_runs_newest_first_by_user_and_status(store):
    ann, bob = principal(), principal()
    ids = [store.create_run(PLAN, ann), store.create_run(PLAN, bob), store.create_run(PLAN, ann)]
    store.finish_run(ids[2], "succeeded")
    assert [r.id for r in store.list_runs(user=ann.user)] == [ids[2], ids[0]]
    assert [r.id for r in store.list_runs(user=ann.user, status="queued")] == [ids[0]]
    assert {r.id for r in store.list_runs(limit=1000)} >= set(ids)
    assert list(store.list_runs(user=bob.user)[0].steps) == ["a", "b", "c"]


def test_errors_name_what_is_wrong(store):
    run_id = store.create_run(PLAN, principal())
    with pytest.raises(RunNotFound):
        store.get_run("missing")
    with pytest.raises(RunNotFound):
        store.update_run("missing", status="failed")
    with pytest.raises(ExecutionError, match="no step 'zzz'"):
        store.update_step(run_id, "zzz", "running")
    with pytest.raises(ExecutionError, match="no field"):
        store.update_run(run_id, colour="red")
    with pytest.raises(ExecutionError, match="already exists"):
        store.create_run(PLAN, principal(), run_id=run_id)


def test_events_are_ordered_and_resumable(store):
    run_id = store.create_run(PLAN, principal())
    for i in range(5):
        store.append_event(run_id, "progress", step="a", message=f"tick {i}", data={"done": i})
    events = store.events(run_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5] and events[3].data == {"done": 3}
    assert [e.seq for e in store.events(run_id, after_seq=3)] == [4, 5]
    assert store.events(run_id, after_seq=5) == [] and store.events("other") == []


def test_concurrent_writers_never_share_a_seq(store):
    run_id = store.create_run(PLAN, principal())
    second = RunStore(store.url)  # another connection pool, as another process would have

    def write(s: RunStore, n: int) -> None:
        for i in range(n):
            s.append_event(run_id, "progress", data={"i": i})

    threads = [threading.Thread(target=write, args=(s, 15)) for s in (store, second, store, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    second.close()
    assert [e.seq for e in store.events(run_id)] == list(range(1, 61))


def test_runs_of_a_dead_process_are_marked_interrupted_keeping_finished_steps(store):
    # a real process creates a run, finishes one step, starts the next, and dies
    script = (
        "import sys; from executor import RunStore; from skills import Plan, Step;"
        "plan = Plan(steps=[Step(id=i, skill='add') for i in 'abc']);"
        "s = RunStore(sys.argv[1]); r = s.create_run(plan, None, status='running');"
        "s.update_step(r, 'a', 'succeeded', outputs={'values': [1]}); s.update_step(r, 'b', 'running');"
        "print(r)"
    )
    done = subprocess.run([sys.executable, "-c", script, store.url], capture_output=True, text=True, check=True)
    dead_run = done.stdout.strip().splitlines()[-1]
    alive_run = store.create_run(PLAN, principal(), status="running")
    job_run = store.create_run(PLAN, principal(), status="running")
    store.update_run(job_run, job_id="raysubmit_123", owner="gone-host:1:1")
    remote_run = store.create_run(PLAN, principal(), status="running")
    store.update_run(remote_run, owner="another-host:42:7")

    assert dead_run in store.mark_interrupted()
    assert {alive_run, job_run, remote_run}.isdisjoint(store.mark_interrupted())

    record = store.get_run(dead_run)
    assert record.status == "interrupted" and "finished steps are kept" in record.hint
    assert record.steps["a"].status == "succeeded" and record.steps["a"].outputs == {"values": [1]}
    assert record.steps["b"].status == "interrupted" and record.steps["b"].finished is not None
    assert record.steps["c"].status == "skipped"
    assert store.events(dead_run)[-1].kind == "run_interrupted"
    assert store.get_run(alive_run).status == "running"
    assert store.mark_interrupted([remote_run]) == [remote_run]  # explicit ids: the caller knows best


def test_owner_liveness():
    assert not owner_is_dead(current_owner())
    host, pid, start = current_owner().split(":")
    assert owner_is_dead(f"{host}:{pid}:{int(start or 0) + 1}")  # same pid, other start time: a restarted process
    assert not owner_is_dead("some-other-host:1:1") and owner_is_dead(None)
    assert host == socket.gethostname()


def test_run_plan_records_everything_in_the_store(store, engine, artifacts, registry, analyst):
    plan = make_plan(("a", "numbers", {"n": 3}), ("bad", "fail", {"hint": "h"}),
                     ("skip", "add", {"a": ref("bad.sum"), "b": 1}), ("b", "scale", {"values": ref("a.values")}))
    result = run_plan(plan, analyst, engine=engine, artifacts=artifacts, store=store, registry=registry)
    record = store.get_run(result.id)
    assert record == result
    assert record.status == "failed" and record.user == "ann" and record.result["failed_step"] == "bad"
    assert record.steps["b"].outputs == {"values": [0, 2, 4]} and record.steps["skip"].status == "skipped"
    assert record.steps["bad"].hint == "h" and "Traceback" in record.steps["bad"].traceback
    kinds = [(e.kind, e.step, e.data.get("status")) for e in store.events(result.id) if e.kind != "progress"]
    assert kinds[-1] == ("run", None, "failed") and ("step", "skip", "skipped") in kinds
