"""Where dataset files live: a local folder (the embedded default) or an S3-compatible bucket.

Files are content-addressed (`<dataset>/<sha256>.parquet`) and never rewritten, so a version's
file is immutable wherever it lives. A version registered in a bucket records its full
location (`s3://bucket/prefix/...`); a local one its path under the datasets folder. Only
the platform holds the bucket's credentials (settings `WARDEN_S3_*`): callers read through
the gateway and never see them, nor the location.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import polars as pl
import pyarrow.fs as pa_fs

from warden.errors import StorageUnavailable, Unprocessable

if TYPE_CHECKING:
    from warden.config import Settings

S3 = "s3://"


@dataclass(frozen=True)
class DataFile:
    """One immutable dataset file, and how the platform reaches it (hashable: caches key on
    it). `options` are polars storage options: the platform's, never shown to a caller."""

    location: str
    options: tuple[tuple[str, str | int], ...] = field(default=(), repr=False)

    @property
    def remote(self) -> bool:
        return self.location.startswith(S3)

    @property
    def catalogued(self) -> bool:
        """Its size is the catalog's to say (an object, a snapshot): never stat it."""
        return self.remote

    def scan(self) -> pl.LazyFrame:
        if not self.remote:
            return pl.scan_parquet(self.location)
        return pl.scan_parquet(self.location, storage_options=dict(self.options))

    def __str__(self) -> str:
        return self.location


@dataclass(frozen=True)
class Storage:
    """`root`: a local folder, or `s3://bucket/prefix` with its endpoint and credentials."""

    root: str
    endpoint: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    region: str = "us-east-1"
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 60.0

    @property
    def remote(self) -> bool:
        return self.root.startswith(S3)

    @property
    def bucket(self) -> str:
        return urlparse(self.root).netloc

    @property
    def prefix(self) -> str:
        return urlparse(self.root).path.strip("/")

    def location(self, relative: str) -> str:
        """Where a file of the store is; what a version records (relative when local)."""
        if not self.remote:
            return relative
        return f"{S3}{self.bucket}/" + "/".join(p for p in (self.prefix, relative) if p)

    def file(self, location: str) -> DataFile:
        if not location.startswith(S3):
            return DataFile(location)
        return DataFile(location, self._polars_options())

    def _polars_options(self) -> tuple[tuple[str, str | int], ...]:
        options: dict[str, str | int] = {
            "aws_region": self.region,
            "connect_timeout": f"{self.connect_timeout_s}s",
            "timeout": f"{self.request_timeout_s}s",
            "max_retries": 2,
        }
        options |= self.connection("aws_endpoint_url", "aws_access_key_id", "aws_secret_access_key")
        return tuple(sorted(options.items()))

    def connection(self, endpoint: str, key_id: str, secret: str) -> dict[str, str]:
        """The endpoint (and whether it is plain HTTP, as `aws_allow_http`) and credentials,
        under the names a client gives them; what is not configured is left out."""
        options: dict[str, str] = {}
        if self.endpoint:
            options[endpoint] = self.endpoint
            options["aws_allow_http"] = str(self.endpoint.startswith("http://")).lower()
        if self.access_key and self.secret_key:
            options[key_id] = self.access_key
            options[secret] = self.secret_key
        return options

    def filesystem(self) -> pa_fs.S3FileSystem:
        endpoint = urlparse(self.endpoint) if self.endpoint else None
        return pa_fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            endpoint_override=endpoint.netloc if endpoint else None,
            scheme=endpoint.scheme if endpoint else "https",
            connect_timeout=self.connect_timeout_s,
            request_timeout=self.request_timeout_s,
            retry_strategy=pa_fs.AwsStandardS3RetryStrategy(max_attempts=2),
        )

    def put(self, source: Path, relative: str) -> str:
        """Copy `source` into the store at `relative` unless it is there; returns the
        location to record. A reader never sees half a file: a local file is renamed into
        place, an object exists only once its upload completed."""
        if not self.remote:
            target = Path(self.root) / relative
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".tmp")
                shutil.copyfile(source, tmp)
                tmp.replace(target)  # atomic
            return relative
        location = self.location(relative)
        key = location.removeprefix(S3)
        fs = self.filesystem()
        try:
            bucket = fs.get_file_info(self.bucket)
            if bucket.type != pa_fs.FileType.Directory:
                raise StorageUnavailable(f"dataset storage: no bucket {self.bucket!r}")
            existing = fs.get_file_info(key)
            if existing.type == pa_fs.FileType.File and existing.size == source.stat().st_size:
                return location  # same digest, same size: already there
            with source.open("rb") as src, fs.open_output_stream(key) as out:
                shutil.copyfileobj(src, out, 8 << 20)
        except OSError as exc:
            raise StorageUnavailable(f"dataset storage: {_reason(exc)}") from None
        return location


def _reason(exc: BaseException) -> str:
    """A short, credential-free reason for a storage failure."""
    text = str(exc)
    for marker, says in (
        ("ACCESS_DENIED", "access denied (check the storage credentials)"),
        ("SIGNATURE_DOES_NOT_MATCH", "the storage refused the credentials"),
        ("INVALID_ACCESS_KEY_ID", "the storage does not know the access key"),
        ("NO_SUCH_BUCKET", "no such bucket"),
        ("NETWORK_CONNECTION", "the storage endpoint cannot be reached"),
        ("Couldn't connect", "the storage endpoint cannot be reached"),
        ("Connection refused", "the storage endpoint cannot be reached"),
    ):
        if marker in text:
            return says
    return f"{type(exc).__name__}"


def storage_reason(exc: BaseException) -> str:
    """What to tell a caller when reading a dataset file failed (no location, no secret)."""
    text = str(exc)
    if isinstance(exc, PermissionError) or "403" in text or "ACCESS_DENIED" in text:
        return "the dataset's storage refused the platform's credentials"
    if "connect" in text.lower() or "dns" in text.lower() or "timed out" in text.lower():
        return "the dataset's storage cannot be reached"
    if isinstance(exc, FileNotFoundError) or "404" in text or "not found" in text.lower():
        return "the dataset's file is missing from storage"
    return f"the dataset's file cannot be read ({type(exc).__name__}): is it corrupt?"


def storage_for(settings: Settings) -> Storage:
    """The store new dataset files go to: the bucket of WARDEN_STORAGE_URL, else the local
    datasets folder."""
    url = settings.storage_url
    if not url or url.startswith("file://") or "://" not in url:
        return Storage(root=url.removeprefix("file://") if url else str(settings.datasets_dir))
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise Unprocessable(f"WARDEN_STORAGE_URL must be s3://BUCKET[/PREFIX], not {url[:80]!r}")
    return Storage(
        root=url.rstrip("/"),
        endpoint=settings.s3_endpoint_url,
        access_key=settings.s3_access_key_id,
        secret_key=settings.s3_secret_access_key,
        region=settings.s3_region,
        connect_timeout_s=settings.s3_connect_timeout_s,
        request_timeout_s=settings.s3_request_timeout_s,
    )


def data_file(settings: Settings, location: str) -> DataFile:
    """A version's file as the platform reaches it (a local path or an object)."""
    return storage_for(settings).file(location)
