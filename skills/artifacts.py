"""Where skills keep what they make: tables (Parquet), models (xgboost JSON), JSON and files.

A local folder by default; any URI pyarrow's filesystems understand (`s3://`, `gs://`, `hdfs://`, `file://`) for
clusters, so that Ray workers on other nodes can read what the driver wrote.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class ArtifactAccessError(PermissionError):
    """A key or URI that points outside the artifact store."""


class ArtifactStore:
    """Keys are relative paths like `run-1/train/model.json`; URIs are what other processes open."""

    def __init__(self, root: str | Path) -> None:
        root = str(root)
        if "://" not in root:
            Path(root).mkdir(parents=True, exist_ok=True)
            root = Path(root).resolve().as_uri()
        self.root = root.rstrip("/")
        self._fs, self._base = pafs.FileSystem.from_uri(self.root)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable for Ray tasks: rebuilt from the root URI
        return (ArtifactStore, (self.root,))

    def uri(self, key: str) -> str:
        return f"{self.root}/{key.lstrip('/')}"

    def local_path(self, key: str) -> Path | None:
        """A local filesystem path for `key` when the store is local, else None."""
        if isinstance(self._fs, pafs.LocalFileSystem):
            return Path(self._path(key))
        return None

    def _path(self, key_or_uri: str) -> str:
        """The filesystem path of a key or URI, which must lie inside this store: a URI elsewhere (the warehouse's
        own files, another store) would let a skill read data around governance."""
        if "://" in key_or_uri:
            if not key_or_uri.startswith(self.root + "/"):
                raise ArtifactAccessError(f"{key_or_uri} is outside the artifact store {self.root}")
            key_or_uri = key_or_uri[len(self.root) + 1:]
        if ".." in key_or_uri.replace("\\", "/").split("/"):
            raise ArtifactAccessError(f"artifact key {key_or_uri!r} climbs out of the artifact store with '..'")
        return f"{self._base}/{key_or_uri.lstrip('/')}"

    def _ensure_parent(self, path: str) -> None:
        parent = path.rsplit("/", 1)[0]
        self._fs.create_dir(parent, recursive=True)

    def put_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        self._ensure_parent(path)
        with self._fs.open_output_stream(path) as f:
            f.write(data)
        return self.uri(key)

    def get_bytes(self, key_or_uri: str) -> bytes:
        with self._fs.open_input_stream(self._path(key_or_uri)) as f:
            return f.read()

    def put_json(self, key: str, obj: Any) -> str:
        return self.put_bytes(key, json.dumps(obj, indent=2, default=str).encode())

    def get_json(self, key_or_uri: str) -> Any:
        return json.loads(self.get_bytes(key_or_uri))

    def put_table(self, key: str, table: pa.Table) -> str:
        path = self._path(key)
        self._ensure_parent(path)
        pq.write_table(table, path, filesystem=self._fs)
        return self.uri(key)

    def get_table(self, key_or_uri: str) -> pa.Table:
        return pq.read_table(self._path(key_or_uri), filesystem=self._fs)

    def filesystem_path(self, key_or_uri: str) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and path of a key or URI inside this store, for readers that stream a table in
        batches (Ray Data's `read_parquet`) instead of `get_table`."""
        return self._fs, self._path(key_or_uri)

    def exists(self, key_or_uri: str) -> bool:
        return self._fs.get_file_info(self._path(key_or_uri)).type != pafs.FileType.NotFound
