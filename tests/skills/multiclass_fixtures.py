"""Generated tables for the multiclass, positive-level and bad-target tests, registered in a real governance Engine
and read back with the governed `ctx.sql` into a real ArtifactStore, as the query skill would."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from ml_fixtures import Harness, make_harness

FLOWER_ID = "flower_id"
SPECIES = ("setosa", "versicolor", "virginica")
TABLES = ["flowers", "loans", "odd"]


def flowers(rows: int = 600, seed: int = 0) -> pa.Table:
    """Three species told apart by petal length and width (sepal width is noise). At site 'marsh', which the model
    is not given, half of the labels are drawn at random: the slice where a model must err most."""
    rng = np.random.default_rng(seed)
    species = rng.choice(len(SPECIES), size=rows)
    petal_length = np.array([1.5, 4.3, 6.0])[species] + rng.normal(scale=0.5, size=rows)
    petal_width = np.array([0.3, 1.3, 2.2])[species] + rng.normal(scale=0.3, size=rows)
    site = rng.choice(["meadow", "forest", "marsh"], size=rows)
    shuffled = (site == "marsh") & (rng.random(rows) < 0.5)
    species = np.where(shuffled, rng.choice(len(SPECIES), size=rows), species)
    return pa.table({
        FLOWER_ID: np.arange(1, rows + 1, dtype=np.int64),
        "petal_length": petal_length.round(2), "petal_width": petal_width.round(2),
        "sepal_width": rng.normal(3.0, 0.4, size=rows).round(2),
        "site": site, "species": np.array(SPECIES)[species],
    })


def loans(rows: int = 800, seed: int = 1) -> pa.Table:
    """Loan status good/bad (neither a yes/no word): higher income makes a loan good, more debt makes it bad."""
    rng = np.random.default_rng(seed)
    income, debt = rng.normal(50, 15, size=rows), rng.normal(10, 4, size=rows)
    logit = 0.12 * (income - 50) - 0.4 * (debt - 10) + rng.normal(scale=0.8, size=rows)
    return pa.table({"loan_id": np.arange(rows, dtype=np.int64), "income": income.round(1), "debt": debt.round(1),
                     "status": np.where(logit > 0, "good", "bad")})


def harness(tmp_path: Path, compute: str = "local", **settings: object) -> Harness:
    """A context as the executor builds it, over an engine that may read the generated tables."""
    return make_harness(tmp_path, compute, tables=TABLES, **settings)
