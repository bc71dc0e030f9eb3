"""Experiment tracking: compare runs side by side, list a run's artifacts and download them (owner or admin only)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from service.api.compare import Comparison, compare, parse_ids
from service.api.deps import RunDep, ServicesDep, UserDep
from service.api.downloads import ArtifactList, download, listing
from service.api.errors import ERROR_RESPONSES, ErrorBody

router = APIRouter(tags=["runs"], responses={**ERROR_RESPONSES, 404: {"model": ErrorBody,
                                                                        "description": "no such run (or file)"}})


@router.get("/v1/compare", response_model=Comparison, summary="Runs side by side: params, metrics, curves, importance")
def compare_runs(user: UserDep, services: ServicesDep,
                 runs: Annotated[str, Query(min_length=1, max_length=1400, description="2 to 10 run ids, "
                                            "comma-separated", examples=["3f2a9c1b7d4e5f60,9b1c2d3e4f506172"])],
                 ) -> Comparison:
    """Only runs the caller may see: another user's run answers 404, as a run that does not exist."""
    return compare(services.store, user, parse_ids(runs))


@router.get("/v1/runs/{run_id}/artifacts", response_model=ArtifactList, summary="A run's files, with download links",
            responses={403: {"model": ErrorBody, "description": "another user's run"}})
def run_artifacts(run: RunDep, services: ServicesDep) -> ArtifactList:
    """The model, tables, report and plots the run's steps wrote (with its OODA and report runs), and its plan and
    result documents; names are relative to the run, never server paths."""
    return listing(services.store, services.artifacts, run)


@router.get("/v1/runs/{run_id}/artifacts/{path:path}", summary="Download one of a run's files",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}},
                       403: {"model": ErrorBody, "description": "another user's run"}})
def run_artifact(run: RunDep, services: ServicesDep, path: str) -> StreamingResponse:
    """`path` as listed by GET /v1/runs/{id}/artifacts; read through the artifact store (local or s3://)."""
    found = download(services.store, services.artifacts, run, path)
    headers = {"Content-Disposition": f'attachment; filename="{found.filename}"', "X-Content-Type-Options": "nosniff"}
    if found.size is not None:
        headers["Content-Length"] = str(found.size)
    return StreamingResponse(found.body, media_type=found.media_type, headers=headers)
