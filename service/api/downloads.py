"""A run's artifacts as its owner sees them: names relative to the run, sizes and a download link through the API.

Everything is read through the artifact store (a local folder or `s3://...`), never by a path of this machine, and
no store path or URI is shown. A session's OODA and report runs are listed with it (their files are the session's
final model and report). Plan and result documents come from the run store as `plan.json` and `result.json`.
Ray Train/Tune bookkeeping (checkpoints, experiment state) is left out: it is not a result.
"""
from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel, Field

from executor import RunResult, RunStore
from service.api.errors import ApiError
from service.api.views import session_children
from skills.artifacts import ArtifactAccessError, ArtifactStore

HIDDEN_PARTS = frozenset({"checkpoints"})
DOCUMENTS = ("plan.json", "result.json")
KINDS = {".json": "json", ".parquet": "table", ".html": "report", ".svg": "plot", ".png": "plot", ".csv": "table"}


class ArtifactItem(BaseModel):
    """One file of a run: where it is in the run (`path`), its size and its download link."""

    run: str = Field(description="the run that wrote it (the run itself, or one its session started)")
    path: str = Field(description="step/name inside that run's folder, or plan.json / result.json")
    step: str | None = None
    size: int | None = Field(default=None, description="bytes")
    kind: str = Field(description="model, table, report, plot, json or file")
    download: str


class ArtifactList(BaseModel):
    """The files of a run and of the runs its session started."""

    run: str
    artifacts: list[ArtifactItem]


@dataclass(frozen=True)
class Download:
    """A file to send: its name, media type, size and bytes."""

    filename: str
    media_type: str
    size: int | None
    body: Iterator[bytes]


def _kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    if name == "model.json":
        return "model"
    return next((k for ext, k in KINDS.items() if name.endswith(ext)), "file")


def _documents(run: RunResult) -> dict[str, bytes]:
    docs = {"plan.json": json.dumps(run.plan, indent=2).encode()}
    if isinstance(run.result.get("summary"), dict):
        docs["result.json"] = json.dumps(run.result["summary"], indent=2, default=str).encode()
    return docs


def session_runs(store: RunStore, run: RunResult) -> list[RunResult]:
    """The run, then the runs its session started that have the same owner."""
    return [run, *(r for r in store.get_runs(session_children(run)) if r.user == run.user)]


def listing(store: RunStore, artifacts: ArtifactStore, run: RunResult) -> ArtifactList:
    """Every artifact of `run`'s session, documents first."""
    base = f"/v1/runs/{run.id}/artifacts"
    items = [ArtifactItem(run=run.id, path=name, size=len(body), kind="json", download=f"{base}/{name}")
             for name, body in _documents(run).items()]
    for owner in session_runs(store, run):
        for path, size in artifacts.listing(owner.id):
            parts = path.split("/")
            if HIDDEN_PARTS.intersection(parts) or any(p.startswith(".") for p in parts):
                continue
            items.append(ArtifactItem(run=owner.id, path=path, step=parts[0] if len(parts) > 1 else None, size=size,
                                      kind=_kind(path), download=f"{base}/{owner.id}/{path}"))
    return ArtifactList(run=run.id, artifacts=items)


def _not_found(run: RunResult, path: str) -> ApiError:
    return ApiError(404, "not_found", f"run {run.id} has no artifact {path!r}",
                    hint=f"list them with GET /v1/runs/{run.id}/artifacts")


def download(store: RunStore, artifacts: ArtifactStore, run: RunResult, path: str) -> Download:
    """The file `path` of the listing of `run` (`plan.json`, `result.json`, or `<run id>/<step>/<name>` of the run
    or a run its session started). 404 for anything else: other runs, '..', absolute paths, URIs."""
    docs = _documents(run)
    if path in DOCUMENTS:
        if path not in docs:
            raise _not_found(run, path)
        return Download(path, "application/json", len(docs[path]), iter([docs[path]]))
    owner, _, rest = path.partition("/")
    allowed = {r.id for r in session_runs(store, run)}
    parts = rest.split("/")
    if owner not in allowed or not rest or "\\" in rest or "://" in rest or any(p in ("", ".", "..") for p in parts) \
            or HIDDEN_PARTS.intersection(parts):
        raise _not_found(run, path)
    key = f"{owner}/{rest}"
    try:
        size = artifacts.size(key)
    except (ArtifactAccessError, OSError, ValueError):
        size = None
    if size is None:
        raise _not_found(run, path)
    media = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    return Download(re.sub(r"[^A-Za-z0-9._-]", "_", parts[-1]), media, size, artifacts.chunks(key))
