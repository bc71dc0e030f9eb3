"""Warehouse connectors behind one small interface (`Warehouse`, see base.py): the embedded DuckDB (default, a file
or a folder of Parquet/CSV copied into memory), PostgreSQL (queries run in the database), and Snowflake, BigQuery and
Databricks SQL (optional drivers; not run against live accounts). `open_warehouse` picks one for a path or URL.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from governance.errors import GovernanceError
from governance.warehouses.base import (
    Warehouse,
    WarehouseUnavailable,
    has_secret,
    redact_url,
    url_scheme,
)
from governance.warehouses.embedded import EmbeddedDuckDB, sanitize_error

# URL scheme -> how to open it (module, class), imported only when such a warehouse is opened.
SCHEMES: dict[str, tuple[str, str]] = {
    "postgresql": ("governance.warehouses.postgres", "PostgresWarehouse"),
    "postgres": ("governance.warehouses.postgres", "PostgresWarehouse"),
    "snowflake": ("governance.warehouses.cloud", "SnowflakeWarehouse"),
    "bigquery": ("governance.warehouses.cloud", "BigQueryWarehouse"),
    "databricks": ("governance.warehouses.cloud", "DatabricksWarehouse"),
}


def is_url(source: object) -> bool:
    """True for a warehouse URL (`scheme://...`), False for a path."""
    return url_scheme(source) is not None


def check_source(source: str | Path) -> None:
    """Refuse a URL of an unknown scheme (naming the supported ones) or a path that does not exist."""
    scheme = url_scheme(str(source)) if isinstance(source, str) else None
    if scheme is not None and scheme not in SCHEMES:
        raise GovernanceError(f"unknown warehouse URL scheme {scheme + '://'!r}",
                              hint="Use a DuckDB file, a folder of Parquet/CSV files, or one of: "
                                   + ", ".join(f"{s}://" for s in SCHEMES))
    if scheme is None and not Path(source).exists():
        raise GovernanceError(f"warehouse {Path(source).resolve()} does not exist",
                              hint="Pass a DuckDB file, a folder of Parquet/CSV files or a postgresql:// URL.")


def open_warehouse(source: str | Path, **limits: Any) -> Warehouse:
    """The warehouse at a path (embedded DuckDB; `limits`: memory_limit, threads) or URL (see SCHEMES)."""
    import importlib

    check_source(source)
    scheme = url_scheme(str(source)) if isinstance(source, str) else None
    if scheme is None:
        return EmbeddedDuckDB.from_path(source, **limits)
    module, name = SCHEMES[scheme]
    cls = getattr(importlib.import_module(module), name)
    return cls(str(source)) if scheme not in ("postgresql", "postgres") else cls(str(source), **limits)


__all__ = ["SCHEMES", "EmbeddedDuckDB", "Warehouse", "WarehouseUnavailable", "check_source", "has_secret", "is_url",
           "open_warehouse", "redact_url", "sanitize_error"]
