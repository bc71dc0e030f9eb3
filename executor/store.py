"""The run store: runs, their steps and an append-only event log, on SQLAlchemy 2.

SQLite by default (`sqlite:///path/runs.db`, `sqlite://` in memory, or a bare file path); PostgreSQL by URL through
psycopg 3 (`postgresql://` and `postgres://` are rewritten to `postgresql+psycopg://`). Every time is stored in UTC.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload
from uuid import uuid4

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import StaticPool

from executor.errors import ExecutionError, RunNotFound
from executor.owner import current_owner, owner_is_dead
from skills.runs import FINISHED_RUN, RunEvent, RunResult, RunStatus, StepResult, StepStatus

if TYPE_CHECKING:
    from executor.query import RunPage, RunQuery
    from governance import Principal
    from skills.plan import Plan

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("id", String(64), primary_key=True),
    Column("user", String(200), nullable=False, index=True),
    Column("status", String(20), nullable=False, index=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("plan", JSON, nullable=False),
    Column("prompt", Text, nullable=False, default=""),
    Column("principal", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    Column("error", Text),
    Column("hint", Text),
    Column("backend", String(20), nullable=False),
    Column("job_id", String(200)),
    Column("owner", String(300)),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("settings", JSON),  # the RuntimeSettings the run runs with (workers, CPUs, GPUs), None: defaults
)
# Columns added after the first release: a store created before them gets them at open (nullable, no default).
ADDED_COLUMNS = (runs.c.settings,)

steps = Table(
    "steps", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("step_id", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("skill", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started", DateTime(timezone=True)),
    Column("finished", DateTime(timezone=True)),
    Column("outputs", JSON),
    Column("error", Text),
    Column("hint", Text),
    Column("error_type", String(200)),
    Column("traceback", Text),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("step", String(200)),
    Column("message", Text, nullable=False, default=""),
    Column("data", JSON, nullable=False),
    UniqueConstraint("run_id", "seq", name="uq_events_run_seq"),
)

_STEP_FIELDS = ("status", "started", "finished", "outputs", "error", "hint", "error_type", "traceback")
_RUN_FIELDS = ("status", "result", "error", "hint", "backend", "job_id", "owner", "cancel_requested", "settings")


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def normalize_url(url: str | Path) -> str:
    """A SQLAlchemy URL for `url`: psycopg 3 for PostgreSQL, a file path becomes SQLite."""
    text = str(url)
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+psycopg://" + text[len(prefix):]
    if "://" not in text:
        return f"sqlite:///{Path(text).resolve()}"
    return text


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, future=True)
    if parsed.database in (None, "", ":memory:"):
        # one shared connection, or every connection would see its own empty in-memory database
        return create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a run (maybe another process) writes
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _add_missing_columns(engine: Engine) -> None:
    """ALTER TABLE ... ADD COLUMN for each of ADDED_COLUMNS an older store lacks (another process may add it at
    the same moment: its duplicate-column error is fine)."""
    for column in ADDED_COLUMNS:
        if column.name in {c["name"] for c in inspect(engine).get_columns(column.table.name)}:
            continue
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.execute(text(f'ALTER TABLE {column.table.name} ADD COLUMN "{column.name}" {kind}'))
        except (OperationalError, ProgrammingError):
            if column.name not in {c["name"] for c in inspect(engine).get_columns(column.table.name)}:
                raise


def _principal_json(principal: Principal | None) -> dict[str, Any]:
    if principal is None:
        return {}
    if hasattr(principal, "model_dump"):
        return principal.model_dump(mode="json")
    return {"user": str(getattr(principal, "user", principal))}


class RunStore:
    """Runs, steps and events in a SQL database. Thread-safe; several processes may share one database."""

    def __init__(self, url: str | Path = "sqlite://") -> None:
        self.url = normalize_url(url)
        self.engine = _make_engine(self.url)
        self._lock = threading.Lock()  # serialises this process's writers (SQLite allows one at a time anyway)
        self._shared_connection = isinstance(self.engine.pool, StaticPool)
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)

    def __repr__(self) -> str:
        return f"RunStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Ray job drivers, worker processes): rebuilt from the URL
        return (RunStore, (self.url,))

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        # an in-memory SQLite store has one connection for all threads: readers must wait for writers
        with self._lock if self._shared_connection else nullcontext(), self.engine.connect() as conn:
            yield conn

    # ---- runs -------------------------------------------------------------------------------------------------
    def create_run(self, plan: Plan, principal: Principal | None, *, prompt: str = "", backend: str = "local",
                   run_id: str | None = None, status: RunStatus = "queued",
                   settings: dict[str, Any] | None = None) -> str:
        """Record a new run of `plan` (every step pending) owned by this process; returns its id. `settings`: the
        RuntimeSettings (JSON) it is to run with, read back by whoever runs it (a Ray job)."""
        run_id = run_id or uuid4().hex[:16]
        now = utcnow()
        row = {"id": run_id, "user": getattr(principal, "user", None) or "unknown", "status": status,
               "created": now, "updated": now, "plan": plan.model_dump(mode="json"), "prompt": prompt,
               "principal": _principal_json(principal), "result": {}, "backend": backend,
               "owner": current_owner(), "cancel_requested": False, "settings": settings}
        first = {s.id: (i, s) for i, s in reversed(list(enumerate(plan.steps)))}  # a bad plan may repeat an id
        step_rows = [{"run_id": run_id, "step_id": sid, "position": i, "skill": s.skill, "status": "pending"}
                     for sid, (i, s) in sorted(first.items(), key=lambda kv: kv[1][0])]
        try:
            with self._write() as conn:
                conn.execute(insert(runs), [row])
                if step_rows:
                    conn.execute(insert(steps), step_rows)
        except IntegrityError:
            raise ExecutionError(f"run {run_id!r} already exists", hint="use a new run id, or leave it out") from None
        return run_id

    def has_run(self, run_id: str) -> bool:
        """True when the store holds a run with this id."""
        with self._read() as conn:
            return conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is not None

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some of status, result, error, hint, backend, job_id, owner, settings (unknown names are an error)."""
        unknown = set(fields) - set(_RUN_FIELDS)
        if unknown:
            raise ExecutionError(f"runs have no field(s) {sorted(unknown)}", hint=f"fields: {', '.join(_RUN_FIELDS)}")
        with self._write() as conn:
            done = conn.execute(update(runs).where(runs.c.id == run_id).values(updated=utcnow(), **fields))
        if done.rowcount == 0:
            raise RunNotFound(run_id)

    def finish_run(self, run_id: str, status: RunStatus, *, error: str | None = None, hint: str | None = None,
                   result: dict[str, Any] | None = None) -> None:
        """Record the final status of a run (and its summary, or why it failed)."""
        self.update_run(run_id, status=status, error=error, hint=hint, result=result or {})

    def get_run(self, run_id: str) -> RunResult:
        """The run with every step. Raises RunNotFound."""
        with self._read() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
            if row is None:
                raise RunNotFound(run_id)
            return self._run_result(row, self._steps(conn, [run_id]).get(run_id, []))

    def list_runs(self, user: str | None = None, *, status: str | None = None, limit: int = 100) -> list[RunResult]:
        """Runs, newest first, optionally of one user or in one status, each with its steps."""
        query = select(runs).order_by(runs.c.created.desc(), runs.c.id).limit(limit)
        if user is not None:
            query = query.where(runs.c.user == user)
        if status is not None:
            query = query.where(runs.c.status == status)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
            by_run = self._steps(conn, [r["id"] for r in rows])
        return [self._run_result(r, by_run.get(r["id"], [])) for r in rows]

    def query_runs(self, query: RunQuery) -> RunPage:
        """One page of the runs `query` matches, in its order (ties: newest first), and how many match in all."""
        from executor.query import RunPage, conditions, sort_column

        where = conditions(query)
        key = sort_column(query.sort)
        order = (key.desc() if query.descending else key.asc()).nulls_last()
        select_page = (select(runs).where(*where).order_by(order, runs.c.created.desc(), runs.c.id)
                       .limit(query.limit).offset(query.offset))
        with self._read() as conn:
            total = conn.execute(select(func.count()).select_from(runs).where(*where)).scalar_one()
            rows = conn.execute(select_page).mappings().all()
            by_run = self._steps(conn, [r["id"] for r in rows])
        return RunPage([self._run_result(r, by_run.get(r["id"], [])) for r in rows], int(total))

    def get_runs(self, run_ids: Iterable[str]) -> list[RunResult]:
        """The runs of these ids that exist, in the order given (unknown ids are left out)."""
        wanted = list(dict.fromkeys(run_ids))
        if not wanted:
            return []
        with self._read() as conn:
            rows = conn.execute(select(runs).where(runs.c.id.in_(wanted))).mappings().all()
            by_run = self._steps(conn, [r["id"] for r in rows])
        found = {r["id"]: self._run_result(r, by_run.get(r["id"], [])) for r in rows}
        return [found[i] for i in wanted if i in found]

    @staticmethod
    def _steps(conn: Connection, run_ids: list[str]) -> dict[str, list[StepResult]]:
        out: dict[str, list[StepResult]] = {}
        if not run_ids:
            return out
        query = select(steps).where(steps.c.run_id.in_(run_ids)).order_by(steps.c.run_id, steps.c.position)
        for row in conn.execute(query).mappings():
            out.setdefault(row["run_id"], []).append(StepResult(
                id=row["step_id"], skill=row["skill"], status=row["status"], started=_utc(row["started"]),
                finished=_utc(row["finished"]), outputs=row["outputs"], error=row["error"], hint=row["hint"],
                error_type=row["error_type"], traceback=row["traceback"]))
        return out

    @staticmethod
    def _run_result(row: Any, step_results: list[StepResult]) -> RunResult:
        fields = {k: row[k] for k in ("id", "user", "status", "plan", "prompt", "principal", "backend", "job_id",
                                      "owner", "error", "hint", "result", "cancel_requested", "settings")}
        return RunResult(**fields, created=_utc(row["created"]), updated=_utc(row["updated"]),
                         steps={s.id: s for s in step_results})

    def reopen_run(self, run_id: str) -> list[str]:
        """Queue an ended run again to resume it: its unfinished steps become pending, its succeeded steps (and
        their outputs) stay as they are and are not run again. Returns the ids of the steps kept."""
        run = self.get_run(run_id)
        if run.status not in FINISHED_RUN or run.status == "succeeded":
            raise ExecutionError(f"run {run_id} is {run.status}: only an interrupted, failed or cancelled run can "
                                 "be resumed", hint="wait for it to end" if run.status not in FINISHED_RUN
                                 else "it finished: start a new run instead")
        kept = [s.id for s in run.steps.values() if s.status == "succeeded"]
        with self._write() as conn:
            conn.execute(update(steps).where((steps.c.run_id == run_id) & (steps.c.status != "succeeded")).values(
                status="pending", started=None, finished=None, outputs=None, error=None, hint=None, error_type=None,
                traceback=None))
            conn.execute(update(runs).where(runs.c.id == run_id).values(
                status="queued", updated=utcnow(), error=None, hint=None, cancel_requested=False,
                owner=current_owner(), result={}))
        self.append_event(run_id, "resumed", message=f"resumed: {len(kept)} finished step(s) kept",
                          data={"kept": kept})
        return kept

    def delete_run(self, run_id: str) -> None:
        """Forget a run that never started (its start was refused after it was recorded)."""
        with self._write() as conn:
            conn.execute(delete(events).where(events.c.run_id == run_id))
            conn.execute(delete(steps).where(steps.c.run_id == run_id))
            conn.execute(delete(runs).where(runs.c.id == run_id))

    def runs_since(self, user: str, since: datetime) -> list[RunResult]:
        """`user`'s runs created at or after `since`, oldest first (what quotas count)."""
        query = select(runs).where((runs.c.user == user) & (runs.c.created >= since)).order_by(runs.c.created)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        return [self._run_result(r, []) for r in rows]

    def count_active(self, user: str) -> int:
        """How many of `user`'s runs are queued or running."""
        query = select(func.count()).select_from(runs).where(
            (runs.c.user == user) & runs.c.status.not_in(FINISHED_RUN))
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def request_cancel(self, run_id: str) -> None:
        """Ask the process running `run_id` (whichever it is) to stop; it notices within a second."""
        self.update_run(run_id, cancel_requested=True)
        self.append_event(run_id, "cancel_requested", message="cancel requested")

    def cancel_requested(self, run_id: str) -> bool:
        """True once request_cancel was called for this run."""
        with self._read() as conn:
            flag = conn.execute(select(runs.c.cancel_requested).where(runs.c.id == run_id)).scalar()
        return bool(flag)

    # ---- steps ------------------------------------------------------------------------------------------------
    def update_step(self, run_id: str, step_id: str, status: StepStatus, **fields: Any) -> None:
        """Set a step's status and any of started, finished, outputs, error, hint, error_type, traceback."""
        unknown = set(fields) - set(_STEP_FIELDS)
        if unknown:
            raise ExecutionError(f"steps have no field(s) {sorted(unknown)}", hint=f"fields: {', '.join(_STEP_FIELDS)}")
        where = (steps.c.run_id == run_id) & (steps.c.step_id == step_id)
        with self._write() as conn:
            done = conn.execute(update(steps).where(where).values(status=status, **fields))
            if done.rowcount == 0:
                raise ExecutionError(f"run {run_id!r} has no step {step_id!r}", step=step_id,
                                     hint="create the run from the plan that holds this step")
            conn.execute(update(runs).where(runs.c.id == run_id).values(updated=utcnow()))

    # ---- events -----------------------------------------------------------------------------------------------
    def append_event(self, run_id: str, kind: str, *, step: str | None = None, message: str = "",
                     data: dict[str, Any] | None = None) -> RunEvent:
        """Append one event; `seq` counts from 1 per run. Safe against concurrent writers (retries on a clash)."""
        for _ in range(20):
            try:
                return self._insert_event(run_id, kind, step, message, data or {})
            except IntegrityError:  # another process took this seq between our read and our insert
                continue
        raise ExecutionError(f"could not append an event to run {run_id!r}", hint="too many concurrent writers")

    def _insert_event(self, run_id: str, kind: str, step: str | None, message: str,
                      data: dict[str, Any]) -> RunEvent:
        with self._write() as conn:
            seq = conn.execute(select(func.coalesce(func.max(events.c.seq), 0)).where(events.c.run_id == run_id))
            ev = RunEvent(run_id=run_id, seq=seq.scalar_one() + 1, time=utcnow(), kind=kind, step=step,
                          message=message, data=data)
            conn.execute(insert(events), [ev.model_dump(mode="python")])
        return ev

    def events(self, run_id: str, after_seq: int = 0, *, limit: int | None = None) -> list[RunEvent]:
        """Events of a run with seq > after_seq, in order (what a server-sent-events stream resumes from)."""
        query = (select(events).where((events.c.run_id == run_id) & (events.c.seq > after_seq))
                 .order_by(events.c.seq).limit(limit))
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        return [RunEvent(run_id=r["run_id"], seq=r["seq"], time=_utc(r["time"]), kind=r["kind"], step=r["step"],
                         message=r["message"], data=r["data"]) for r in rows]

    # ---- recovery ---------------------------------------------------------------------------------------------
    def mark_interrupted(self, run_ids: Iterable[str] | None = None, *,
                         reason: str = "the process running it stopped", jobs: bool = False) -> list[str]:
        """Mark unfinished runs as interrupted, keeping every finished step; returns their ids.

        With `run_ids`, those runs (when unfinished). Without, every queued or running run whose owner process on
        this host is gone; runs submitted as Ray jobs (job_id set) are left alone unless `jobs` (their cluster died
        with their submitter: the API's own local head), since a job outlives its submitter and its own status is
        the truth.
        """
        with self._read() as conn:
            query = select(runs.c.id, runs.c.owner, runs.c.job_id).where(runs.c.status.not_in(FINISHED_RUN))
            if run_ids is not None:
                query = query.where(runs.c.id.in_(list(run_ids)))
            rows = conn.execute(query).all()
        chosen = [r.id for r in rows
                  if run_ids is not None or ((jobs or r.job_id is None) and owner_is_dead(r.owner))]
        for run_id in chosen:
            self._interrupt(run_id, reason)
        return chosen

    def _interrupt(self, run_id: str, reason: str) -> None:
        now = utcnow()
        with self._write() as conn:
            conn.execute(update(steps).where((steps.c.run_id == run_id) & (steps.c.status == "running"))
                         .values(status="interrupted", finished=now, error=f"interrupted: {reason}"))
            conn.execute(update(steps).where((steps.c.run_id == run_id) & (steps.c.status == "pending"))
                         .values(status="skipped", error=f"not started: {reason}"))
            conn.execute(update(runs).where(runs.c.id == run_id).values(
                status="interrupted", updated=now, error=f"interrupted: {reason}",
                hint="finished steps are kept; run the plan again to finish it"))
        self.append_event(run_id, "run_interrupted", message=reason)
