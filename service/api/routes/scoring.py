"""Production scoring and the model registry: score a table with a run's model; list the registered models."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from service.api.deps import RunDep, ServicesDep, UserDep
from service.api.errors import ERROR_RESPONSES, ErrorBody
from service.model_versions import ModelVersion, list_versions
from service.scoring import ScoreRequest, ScoreResult, score_model
from service.session import SessionEnv

router = APIRouter(prefix="/v1", tags=["runs"], responses={**ERROR_RESPONSES})


class ModelList(BaseModel):
    """Registered models, oldest first (yours; admins: everyone's)."""

    model_config = ConfigDict(extra="forbid")
    models: list[ModelVersion]


@router.post("/runs/{run_id}/score", response_model=ScoreResult, summary="Score a table with the run's model",
             responses={403: {"model": ErrorBody, "description": "another user's run, or a table or column you may "
                                                                 "not read"},
                        404: {"model": ErrorBody, "description": "no such run, or it registered no model"}})
def score_run(run: RunDep, body: ScoreRequest, user: UserDep, services: ServicesDep) -> ScoreResult:
    """Score the rows of `table` the caller may read (governed: her row filters and masks apply), optionally
    filtered by `where` and capped by `limit`, with the model the run registered: a score, the prediction and the
    top 3 reasons (SHAP) per row, written as Parquet by a new scoring run. Answers the row count, the scores' URI
    and the first rows."""
    env = SessionEnv(user.principal, services.get_engine(), services.artifacts, services.store, services.registry,
                     ray_address=services.settings.ray_address)
    return score_model(env, run.id, body)


@router.get("/models", response_model=ModelList, tags=["runs"], summary="Registered models (each accepted model of "
            "a run, with its plan, data snapshot, metrics and features)")
def models(user: UserDep, services: ServicesDep) -> ModelList:
    return ModelList(models=[v for v in list_versions(services.artifacts) if user.may_see(v.user)])
