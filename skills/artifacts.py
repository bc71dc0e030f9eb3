"""Where skills keep what they make: tables (Parquet), models (xgboost JSON), JSON and files, and where Ray
Train/Tune keep checkpoints and experiment state (`storage_for`).

A local folder by default, which only the machine that wrote it can read: fine on one node. On a cluster, any URI
pyarrow's filesystems understand (`s3://`, `gs://`, `hdfs://`), or a folder mounted at the same place on every node
(`shared=True`), so that Ray workers on other nodes read what the driver wrote and the driver reads their checkpoints.

An `s3://` store finds its endpoint (`AWS_ENDPOINT_URL` for MinIO, Ceph or moto), region and credentials the way the
AWS SDK does. The endpoint and region the driver resolved travel with the store to Ray workers; credentials never do
(pyarrow pickles a filesystem's keys only when they were passed explicitly, and a store never passes them): each node
finds its own, in its environment (the Helm chart's Secret) or its cloud identity.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import pyarrow.dataset as pads


class ArtifactAccessError(PermissionError):
    """A key or URI that points outside the artifact store."""


class Storage(NamedTuple):
    """Where a Ray Train or Tune run keeps checkpoints and experiment state: `path` on `filesystem`."""

    path: str
    filesystem: pafs.FileSystem

    def run_config(self) -> dict[str, Any]:
        """The `storage_path` and `storage_filesystem` arguments of Ray's `RunConfig`."""
        return {"storage_path": self.path, "storage_filesystem": self.filesystem}


class ArtifactStore:
    """Keys are relative paths like `run-1/train/model.json`; URIs are what other processes open.

    `shared=True` says that a local folder is mounted at the same place on every Ray node (NFS, a ReadWriteMany
    volume); without it a local store is refused on a cluster of more than one node (`every_node_reads`).
    """

    def __init__(self, root: str | Path, *, shared: bool = False) -> None:
        root = str(root)
        if "://" not in root:
            Path(root).mkdir(parents=True, exist_ok=True)
            root = Path(root).resolve().as_uri()
        self.root = root.rstrip("/")
        self.shared = shared
        self._fs, self._base = pafs.FileSystem.from_uri(self.root)

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable for Ray tasks with the driver's filesystem (its endpoint and region, not its credentials): a
        # worker does not resolve the URI again, which would need the endpoint in its environment too.
        return (_rebuild, (self.root, self.shared, self._fs, self._base))

    @property
    def every_node_reads(self) -> bool:
        """Whether every machine of a cluster reads this store: a remote filesystem, or a local one declared shared."""
        return self.shared or not isinstance(self._fs, pafs.LocalFileSystem)

    def storage_for(self, key: str) -> Storage:
        """Where Ray Train/Tune keep the checkpoints and state of the run under `key`: inside this store, on its
        filesystem, so they land wherever its tables and models do (a bucket, or this machine's folder)."""
        return Storage(self._path(key), self._fs)

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
        if isinstance(self._fs, pafs.LocalFileSystem):  # object stores have no folders (pyarrow would PUT markers)
            self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)

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

    def dataset(self, key_or_uri: str) -> pads.Dataset:
        """A stored table (one Parquet file or a folder of them) as a lazy pyarrow Dataset: its schema, row count and
        row groups without reading the rows, so a worker can read only the columns and row groups it needs."""
        import pyarrow.dataset as pads

        return pads.dataset(self._path(key_or_uri), filesystem=self._fs, format="parquet")

    def filesystem_path(self, key_or_uri: str) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and path of a key or URI inside this store, for readers that stream a table in
        batches (Ray Data's `read_parquet`) instead of `get_table`."""
        return self._fs, self._path(key_or_uri)

    def listing(self, prefix: str) -> list[tuple[str, int]]:
        """Every file under the key `prefix` (a run's folder) as (key relative to `prefix`, size in bytes), sorted;
        empty when there is none."""
        base = self._path(prefix).rstrip("/")
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted((i.path[len(base) + 1:], int(i.size or 0)) for i in infos if i.type == pafs.FileType.File)

    def size(self, key_or_uri: str) -> int | None:
        """The size of a stored file in bytes, or None when there is no such file."""
        info = self._fs.get_file_info(self._path(key_or_uri))
        return int(info.size or 0) if info.type == pafs.FileType.File else None

    def chunks(self, key_or_uri: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """A stored file's bytes in chunks (a download that does not hold a large table in memory)."""
        with self._fs.open_input_stream(self._path(key_or_uri)) as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def exists(self, key_or_uri: str) -> bool:
        return self._fs.get_file_info(self._path(key_or_uri)).type != pafs.FileType.NotFound


def _rebuild(root: str, shared: bool, fs: pafs.FileSystem, base: str) -> ArtifactStore:
    store = ArtifactStore.__new__(ArtifactStore)
    store.root, store.shared, store._fs, store._base = root, shared, fs, base
    return store
