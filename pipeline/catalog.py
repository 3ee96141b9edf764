"""A museum's catalog in any of its real forms -> manifest rows (see manifests/schema.md).

Museums hand over one of: a CSV export (manifest column names), a Parquet manifest, or the IIIF documents
they already serve to the world: a Presentation 3 or 2.1 Manifest, or a Collection of them. `read_catalog`
detects the form from the content (not the extension), reads it from a local path or any fsspec URI, and
returns plain manifest-schema dicts; `catalog_table` turns them into a table that `validate_manifest` checks.

IIIF gives one row per Canvas. Painting ids are derived from the canvas id (a readable tail plus a short hash
of the whole id), so they are folder-safe, stable across runs and distinct across manifests. Images are
requested from the IIIF Image API at a bounded size instead of the (often 100+ megapixel) master.

An unusable catalog as a whole raises one `CatalogError` naming the URL and what is wrong; a single bad canvas
or CSV line becomes a `CatalogProblem` and the other rows go on. HTTP is bounded everywhere: timeouts,
a few retries with backoff for 5xx/429/connection errors only, and a size limit on catalog documents.
Catalog values are data: labels keep their HTML as text (the gallery escapes it) and nothing is evaluated.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import json
import re
import time
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from artmator.pipeline.manifest import (KNOWN_COLUMNS, MANIFEST_SCHEMA, ManifestError, manifest_base_dir,
                               read_manifest, resolve_uri)
from artmator.pipeline.layout import MAX_ID_LENGTH
from artmator.pipeline.storage import redact_text, redact_uri

DEFAULT_MAX_IMAGE_SIZE = 2048
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_TRIES = 3
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_DEPTH = 4
DEFAULT_MAX_DOCUMENTS = 1000

# Metadata labels (any language, case-insensitive, trailing ':' ignored) that fill a manifest column.
ARTIST_LABELS = frozenset({"artist", "creator", "painter", "maker", "author", "artist/maker"})
DATE_LABELS = frozenset({"date", "created", "dated", "creation date", "date created", "date made", "object date",
                         "production date"})

PASS_THROUGH_IIIF = ("iiif_manifest", "iiif_canvas")
_HTTP = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# Path segments that say nothing about the painting; skipped when building the readable part of an id.
_GENERIC_SEGMENTS = frozenset({"canvas", "canvases", "iiif", "manifest", "manifests", "manifest.json",
                               "presentation", "sequence", "normal", "json", "api"})
_SLUG_SEGMENTS = 2
_SLUG_MAX = 80
_HASH_HEX = 8
_CHUNK = 1 << 20
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_IMAGE_TYPES = frozenset({"image", "dctypes:image"})
_CHOICE_TYPES = frozenset({"choice", "oa:choice"})


class CatalogError(ValueError):
    """The catalog as a whole cannot be used (unreachable, not a catalog, empty); the message names the URL."""


@dataclass(frozen=True)
class CatalogProblem:
    """A canvas, CSV line or collection member that could not become a manifest row, and why.

    `kind` is "manifest" for one bad row (a canvas without an image, an unparsable CSV value) and "catalog"
    for a document of a collection that could not be read; `source` is the canvas id, document URL or CSV line.
    """

    painting_id: str | None
    source: str
    reason: str
    kind: str = "manifest"

    def __str__(self) -> str:
        who = f" ({self.painting_id})" if self.painting_id else ""
        return f"{self.source}{who}: {self.reason}"


@dataclass
class Catalog:
    """Rows (manifest-schema dicts plus pass-through columns) and the problems of what did not become a row."""

    rows: list[dict[str, Any]]
    problems: list[CatalogProblem]
    kind: str  # "csv" | "parquet" | "iiif3" | "iiif2"
    source: str
    documents: list[str] = field(default_factory=list)  # IIIF documents read, in order (URLs as fetched)


@dataclass(frozen=True)
class _Limits:
    max_image_size: int
    timeout_s: float
    connect_timeout_s: float
    tries: int
    backoff_s: float
    max_bytes: int
    max_depth: int
    max_documents: int


# ------------------------------------------------------------------------------------------------ public API


def read_catalog(uri: str, storage_options: Mapping[str, Any] | None = None, *,
                 max_image_size: int = DEFAULT_MAX_IMAGE_SIZE, timeout_s: float = DEFAULT_TIMEOUT_S,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, tries: int = DEFAULT_TRIES,
                 backoff_s: float = DEFAULT_BACKOFF_S, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_depth: int = DEFAULT_MAX_DEPTH, max_documents: int = DEFAULT_MAX_DOCUMENTS) -> Catalog:
    """Read a CSV, Parquet or IIIF (Presentation 3 or 2.1, Manifest or Collection) catalog into manifest rows.

    `storage_options` go to fsspec (for http(s): request options such as `headers`; they are sent only to the
    catalog's own host, never to other hosts a Collection points to). `max_image_size` bounds the longer side
    requested from IIIF Image API services. `timeout_s` bounds each HTTP request as a whole, `connect_timeout_s`
    its connection; 5xx/429/connection failures are tried `tries` times with exponential backoff from
    `backoff_s`. Documents over `max_bytes` are refused; Collections are followed `max_depth` levels deep and
    at most `max_documents` documents are read. Raises CatalogError when the catalog as a whole is unusable.
    """
    limits = _Limits(max_image_size=max_image_size, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                     tries=max(1, tries), backoff_s=backoff_s, max_bytes=max_bytes, max_depth=max_depth,
                     max_documents=max_documents)
    if not isinstance(uri, str) or not uri.strip():
        raise CatalogError(f"catalog URI must be a non-empty string, got {uri!r}")
    fetcher = _Fetcher(uri, storage_options, limits)
    if not _is_http(uri) and fetcher.is_folder(uri):
        return _parquet_catalog(uri, fetcher)
    doc = fetcher.fetch(uri)
    if doc.is_parquet:
        return _parquet_catalog(uri, fetcher, doc)
    return _parse_document(uri, doc, fetcher, limits)


def catalog_table(catalog: Catalog) -> pa.Table:
    """The catalog's rows as a table: every MANIFEST_SCHEMA column with its type, then pass-through columns.

    A known column whose values cannot take the schema type (e.g. a Parquet `yaw_deg` of text) keeps its
    inferred type, so `validate_manifest` can say what is wrong with it. Pass-through text stays text.
    """
    rows = catalog.rows
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in KNOWN_COLUMNS))
    fields, arrays = [], []
    for name in list(KNOWN_COLUMNS) + extra:
        values = [row.get(name) for row in rows]
        if name in KNOWN_COLUMNS:
            known = MANIFEST_SCHEMA.field(name).with_nullable(True)
            array = _known_array(name, values, known.type)
            fields.append(known if array.type == known.type else pa.field(name, array.type))
        else:
            array = _pass_through_array(values)
            fields.append(pa.field(name, array.type))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# -------------------------------------------------------------------------------------------------- fetching


@dataclass(frozen=True)
class _Document:
    data: bytes
    content_type: str
    is_parquet: bool
    partial: bool = False  # reading stopped at Parquet's magic (read_manifest reads the file itself)


class _Fetcher:
    """Reads catalog documents with bounded time, tries and size; errors become CatalogError naming the URL."""

    def __init__(self, top_uri: str, storage_options: Mapping[str, Any] | None, limits: _Limits):
        self.top_uri = top_uri
        self.options = dict(storage_options or {})
        self.limits = limits
        self._http_filesystems: dict[bool, Any] = {}

    def is_folder(self, uri: str) -> bool:
        try:
            fs, path = fsspec.core.url_to_fs(uri, **self.options)
            return fs.isdir(path)
        except (ValueError, ImportError, OSError):
            return False  # fetch() reports the reason

    def fetch(self, uri: str) -> _Document:
        if _is_http(uri):
            return self._fetch_http(uri)
        return self._fetch_fsspec(uri)

    # ---- http(s)

    def _client_timeout(self) -> Any:
        import aiohttp

        return aiohttp.ClientTimeout(total=self.limits.timeout_s, connect=self.limits.connect_timeout_s,
                                     sock_read=self.limits.timeout_s)

    def _http_fs(self, uri: str) -> Any:
        """fsspec's HTTP filesystem; the caller's options (maybe credentials) only for the catalog's own host."""
        from fsspec.implementations.http import HTTPFileSystem

        own_host = urlsplit(uri).netloc.lower() == urlsplit(self.top_uri).netloc.lower()
        if own_host not in self._http_filesystems:
            opts = dict(self.options) if own_host else {}
            client_kwargs = {**(opts.pop("client_kwargs", None) or {}), "timeout": self._client_timeout()}
            self._http_filesystems[own_host] = HTTPFileSystem(client_kwargs=client_kwargs, skip_instance_cache=True,
                                                              **opts)
        return self._http_filesystems[own_host]

    def _fetch_http(self, uri: str) -> _Document:
        shown = redact_uri(uri)
        try:
            import aiohttp
        except ImportError:
            raise CatalogError(f"catalog {shown}: reading http(s) catalogs needs aiohttp (pip install aiohttp)") \
                from None
        last = ""
        for attempt in range(self.limits.tries):
            if attempt:
                time.sleep(self.limits.backoff_s * 2 ** (attempt - 1))
            try:
                return self._http_get(uri)
            except FileNotFoundError:
                raise CatalogError(f"catalog {shown}: HTTP 404 Not Found; check the URL") from None
            except aiohttp.ClientResponseError as exc:
                last = f"HTTP {exc.status} {exc.message}".strip()
                if exc.status not in _RETRY_STATUS:
                    raise CatalogError(f"catalog {shown}: {last}{_status_hint(exc.status)}") from None
            except (asyncio.TimeoutError, TimeoutError):
                # Not retried: each try may already have taken the whole timeout.
                raise CatalogError(f"catalog {shown}: no complete answer within {self.limits.timeout_s:g} s "
                                   "(timed out); try again later or raise timeout_s") from None
            except (aiohttp.ClientError, OSError) as exc:
                last = f"connection failed ({redact_text(str(exc)) or type(exc).__name__})"
        raise CatalogError(f"catalog {shown}: {last} after {self.limits.tries} tries")

    def _http_get(self, uri: str) -> _Document:
        from fsspec.asyn import sync
        from fsspec.implementations.http import HTTPStreamFile

        fs = self._http_fs(uri)
        session = sync(fs.loop, fs.set_session)
        # A streaming GET (no HEAD first): statuses arrive as they are, and the body can be cut at max_bytes.
        stream = HTTPStreamFile(fs, uri, session=session, loop=fs.loop, **{**fs.kwargs, "asynchronous": False})
        try:
            headers = stream.r.headers
            length = headers.get("Content-Length")
            if length and length.isdigit() and int(length) > self.limits.max_bytes:
                raise self._too_large(uri, int(length))
            return self._read_bounded(uri, stream.read, headers.get("Content-Type", ""), stop_at_parquet=False)
        finally:
            stream.close()

    # ---- any other fsspec filesystem (local, s3, gs, ...)

    def _fetch_fsspec(self, uri: str) -> _Document:
        shown = redact_uri(uri)
        try:
            fs, path = fsspec.core.url_to_fs(uri, **self.options)
            with fs.open(path, "rb") as f:
                return self._read_bounded(uri, f.read, "", stop_at_parquet=True)
        except CatalogError:
            raise
        except FileNotFoundError:
            raise CatalogError(f"catalog {shown} does not exist") from None
        except IsADirectoryError:
            raise CatalogError(f"catalog {shown} is a folder without Parquet files") from None
        except (ValueError, ImportError, OSError) as exc:
            raise CatalogError(f"cannot read catalog {shown}: {redact_text(str(exc)) or type(exc).__name__}") from None

    def _read_bounded(self, uri: str, read: Any, content_type: str, stop_at_parquet: bool) -> _Document:
        """Read at most max_bytes (else refuse); with `stop_at_parquet`, stop at Parquet's magic number."""
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = read(_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if stop_at_parquet and len(chunks) == 1 and chunk.startswith(b"PAR1"):
                return _Document(chunk, content_type, is_parquet=True, partial=True)
            if total > self.limits.max_bytes:
                raise self._too_large(uri, total)
        data = b"".join(chunks)
        return _Document(data, content_type, is_parquet=data.startswith(b"PAR1"))

    def _too_large(self, uri: str, size: int) -> CatalogError:
        return CatalogError(f"catalog {redact_uri(uri)} is larger than {self.limits.max_bytes} bytes (at least "
                            f"{size}); refusing to read it (raise max_bytes if it really is a catalog)")


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return " (the server wants credentials: pass them as storage_options, e.g. {'headers': {...}})"
    return ""


def _is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


# ------------------------------------------------------------------------------------------ format detection


def _parse_document(uri: str, doc: _Document, fetcher: _Fetcher, limits: _Limits) -> Catalog:
    """CSV or IIIF JSON, told apart by content; HTML error pages and non-IIIF JSON are refused clearly."""
    shown = redact_uri(uri)
    text = _decode(doc.data, shown)
    start = text.lstrip()[:1]
    if start == "<":
        what = f" ({doc.content_type})" if doc.content_type else ""
        raise CatalogError(f"catalog {shown} returned HTML{what}, not a catalog (an error or login page?); "
                           "expected a IIIF Manifest/Collection (JSON), a CSV or a Parquet file")
    if start in ("{", "["):
        document = _parse_json(text, shown)
        walker = _IiifWalker(fetcher, limits)
        return walker.read(uri, document)
    if not start:
        raise CatalogError(f"catalog {shown} is empty")
    return _csv_catalog(uri, text)


def _decode(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"catalog {shown} is not UTF-8 text ({exc.reason} at byte {exc.start}); save CSV "
                           "exports as 'CSV UTF-8'") from None


def _parse_json(text: str, shown: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CatalogError(f"catalog {shown} is not valid JSON ({exc})") from None


# ----------------------------------------------------------------------------------------------- CSV, Parquet


def _parquet_catalog(uri: str, fetcher: _Fetcher, doc: _Document | None = None) -> Catalog:
    """A Parquet manifest; relative URIs resolved so the rows stand on their own.

    Over http(s) the whole file was already fetched (bounded, with retries), so it is parsed from memory: many
    web servers answer no range requests, which fsspec's random-access HTTP files need. Anything else
    (local, s3, gs, a folder of Parquet files) goes through read_manifest.
    """
    shown = redact_uri(uri)
    try:
        if doc is not None and not doc.partial:
            table = pq.read_table(pa.BufferReader(doc.data))
            if table.num_rows == 0:
                raise ManifestError(f"manifest {shown} has no rows")
        else:
            table = read_manifest(uri, fetcher.options)
    except ManifestError as exc:
        raise CatalogError(str(exc)) from None
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise CatalogError(f"catalog {shown} starts like Parquet but cannot be read as Parquet "
                           f"({redact_text(str(exc))})") from None
    base = manifest_base_dir(uri)
    rows = [_resolve_row(row, base) for row in table.to_pylist()]
    return Catalog(rows=rows, problems=[], kind="parquet", source=uri)


def _resolve_row(row: dict[str, Any], base_dir: str) -> dict[str, Any]:
    """Relative image_uri and .mat expressions joined onto the catalog's folder (as load_manifest does)."""
    out = dict(row)
    if isinstance(out.get("image_uri"), str) and out["image_uri"].strip():
        out["image_uri"] = resolve_uri(out["image_uri"], base_dir)
    exps = out.get("expressions")
    if isinstance(exps, list):
        out["expressions"] = [resolve_uri(e, base_dir) if isinstance(e, str) and e.lower().endswith(".mat") else e
                              for e in exps]
    return out


def _csv_catalog(uri: str, text: str) -> Catalog:
    """A CSV export with manifest column names; cells are stripped, empty cells mean "not given"."""
    try:
        return _csv_rows(uri, text)
    except csv.Error as exc:  # an unterminated quote, text after a closing quote, a huge field
        raise CatalogError(f"catalog {redact_uri(uri)} is not readable CSV ({exc})") from None


def _csv_rows(uri: str, text: str) -> Catalog:
    shown = redact_uri(uri)
    delimiter = _csv_delimiter(text)
    # strict: an unterminated quote is an error, not a silently swallowed rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = [name.strip() for name in next(reader, [])]
    _check_csv_header(header, shown)
    base = manifest_base_dir(uri)
    rows: list[dict[str, Any]] = []
    problems: list[CatalogProblem] = []
    for values in reader:
        where = f"{shown} line {reader.line_num}"
        if not any(v.strip() for v in values):
            continue
        cells = {name: (values[i].strip() if i < len(values) else "") for i, name in enumerate(header)}
        pid = cells.get("painting_id") or None
        if len(values) > len(header):
            problems.append(CatalogProblem(pid, where, f"line has {len(values)} values but the header has "
                                           f"{len(header)} columns (an unquoted comma?)"))
            continue
        try:
            rows.append(_resolve_row(_typed_csv_row(cells), base))
        except ValueError as exc:
            problems.append(CatalogProblem(pid, where, str(exc)))
    if not rows and not problems:
        raise CatalogError(f"catalog {shown} has a header but no rows")
    return Catalog(rows=rows, problems=problems, kind="csv", source=uri)


def _csv_delimiter(text: str) -> str:
    """Comma, or the ';' / tab that some exports (European Excel) use, judged by the header line."""
    first = text.splitlines()[0] if text else ""
    for delimiter in (",", ";", "\t"):
        names = {n.strip() for n in next(csv.reader([first], delimiter=delimiter), [])}
        if {"painting_id", "image_uri"} <= names:
            return delimiter
    return ","


def _check_csv_header(header: list[str], shown: str) -> None:
    missing = [c for c in ("painting_id", "image_uri") if c not in header]
    if missing:
        near = [h for h in header if h.lower().replace(" ", "_") in missing]
        hint = f"; column names are case-sensitive, found {near}" if near else ""
        raise CatalogError(f"catalog {shown} is neither IIIF JSON nor Parquet, and as CSV its header lacks "
                           f"{missing} (header: {header[:12]}){hint}; see manifests/schema.md")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise CatalogError(f"catalog {shown}: CSV header names {dupes} more than once")


def _typed_csv_row(cells: dict[str, str]) -> dict[str, Any]:
    """Text cells -> values of the manifest column's type (MANIFEST_SCHEMA); ValueError names the bad cell."""
    row: dict[str, Any] = {}
    for name, text in cells.items():
        if text == "":
            row[name] = None
        elif name in KNOWN_COLUMNS:
            row[name] = _parse_cell(name, text, MANIFEST_SCHEMA.field(name).type)
        else:
            row[name] = text  # pass-through columns stay text
    return row


def _parse_cell(name: str, text: str, type_: pa.DataType) -> Any:
    if pa.types.is_floating(type_) or pa.types.is_integer(type_):
        return _parse_number(name, text, type_)
    if pa.types.is_struct(type_):
        return _parse_struct(name, text, type_)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _parse_text_list(name, text)
    return text


def _parse_number(name: str, text: str, type_: pa.DataType) -> float | int:
    try:
        return _strict_int(text) if pa.types.is_integer(type_) else float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number (write e.g. 12.5)") from None


def _parse_struct(name: str, text: str, type_: pa.StructType) -> dict[str, Any]:
    """'a,b,c,d', '[a, b, c, d]' or a JSON object with the struct's field names -> {field: number}.

    e.g. crop: '10,20,300,310' or '{"x": 10, "y": 20, "w": 300, "h": 310}'.
    """
    fields = [type_.field(i) for i in range(type_.num_fields)]
    names = [f.name for f in fields]
    example = json.dumps(dict(zip(names, range(1, len(names) + 1))))
    kind = "integers" if all(pa.types.is_integer(f.type) for f in fields) else "numbers"
    bad = ValueError(f"{name} {text!r} must be {len(names)} {kind} {', '.join(names)}: "
                     f"'{','.join(map(str, range(1, len(names) + 1)))}', or JSON like '{example}'")
    if text[0] in "[{":
        try:
            value = json.loads(text)
        except ValueError:
            raise bad from None
        if isinstance(value, dict):
            if sorted(value) != sorted(names):
                raise bad
            value = [value[k] for k in names]
    else:
        value = [part.strip() for part in text.split(",")]
    if not isinstance(value, list) or len(value) != len(names):
        raise bad
    try:
        numbers = [_strict_int(v) if pa.types.is_integer(f.type) else _strict_float(v) for v, f in zip(value, fields)]
    except ValueError:
        raise bad from None
    return dict(zip(names, numbers))


def _strict_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    return float(value)


def _strict_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    raise ValueError(value)


def _parse_text_list(name: str, text: str) -> list[str]:
    """'["happiness", "neutral"]' (JSON) or 'happiness; neutral' (e.g. expressions)."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} {text!r} is not a JSON list of strings; write "
                             "'[\"happiness\", \"neutral\"]' or 'happiness;neutral'")
        return value
    return [part.strip() for part in text.split(";") if part.strip()]


# ------------------------------------------------------------------------------------------------------ IIIF


@dataclass(frozen=True)
class _IiifKind:
    version: int  # 2 or 3
    type: str  # "Manifest" | "Collection"


def _iiif_kind(document: Any, shown: str) -> _IiifKind:
    """Version and type from @context and type/@type; JSON that is no IIIF Manifest or Collection raises."""
    if not isinstance(document, dict):
        raise CatalogError(f"catalog {shown} is JSON but not IIIF (a {type(document).__name__}, not an object "
                           "with @context and type)")
    contexts = document.get("@context")
    contexts = contexts if isinstance(contexts, list) else [contexts]
    context_text = " ".join(c for c in contexts if isinstance(c, str))
    raw_type = document.get("type") if isinstance(document.get("type"), str) else document.get("@type")
    raw_type = raw_type if isinstance(raw_type, str) else ""
    if "iiif.io/api/presentation/3" in context_text:
        version = 3
    elif "iiif.io/api/presentation/2" in context_text:
        version = 2
    elif raw_type.startswith("sc:"):
        version = 2
    elif raw_type in ("Manifest", "Collection") and isinstance(document.get("id"), str):
        version = 3
    else:
        raise CatalogError(f"catalog {shown} is JSON but not IIIF: no IIIF Presentation @context and no "
                           f"Manifest/Collection type (found keys {sorted(document)[:10]})")
    short = raw_type.split(":")[-1]
    if short not in ("Manifest", "Collection"):
        raise CatalogError(f"catalog {shown} is a IIIF {raw_type or 'document without a type'}, not a Manifest "
                           "or Collection; give the Manifest's URL")
    return _IiifKind(version, short)


class _IiifWalker:
    """Follows a IIIF Manifest or Collection tree (bounded depth and count, cycle-safe) into rows."""

    def __init__(self, fetcher: _Fetcher, limits: _Limits):
        self.fetcher = fetcher
        self.limits = limits
        self.rows: list[dict[str, Any]] = []
        self.problems: list[CatalogProblem] = []
        self.documents: list[str] = []
        self.seen: set[str] = set()
        self.ids = _IdAllocator()
        self.canvases = 0

    def read(self, uri: str, document: Any) -> Catalog:
        shown = redact_uri(uri)
        kind = _iiif_kind(document, shown)
        self._visit(uri, document, kind, depth=0)
        if self.canvases == 0:
            reasons = "; ".join(str(p) for p in self.problems[:5]) or "every member was already read"
            raise CatalogError(f"catalog {shown}: no Manifest of the Collection could be read: {reasons}")
        return Catalog(rows=self.rows, problems=self.problems, kind=f"iiif{kind.version}", source=uri,
                       documents=self.documents)

    def _visit(self, uri: str, document: dict, kind: _IiifKind, depth: int) -> None:
        self.documents.append(uri)
        self.seen.update({_doc_key(uri), _doc_key(_id_of(document) or uri)})
        if kind.type == "Manifest":
            self._manifest(uri, document, kind.version)
        else:
            self._collection(uri, document, kind.version, depth)

    def _collection(self, uri: str, document: dict, version: int, depth: int) -> None:
        members = list(_collection_members(document, version))
        if not members and depth == 0:
            raise CatalogError(f"catalog {redact_uri(uri)} is a IIIF Collection that lists no Manifests")
        for member_id in members:
            self._follow(member_id, uri, depth + 1)

    def _follow(self, member: str, parent: str, depth: int) -> None:
        """Read one member of a Collection; its failure is a problem of that member, not of the catalog."""
        if _doc_key(member) in self.seen:
            return  # listed twice, or a cycle back to an ancestor
        shown = redact_uri(member)
        if depth > self.limits.max_depth:
            self._member_problem(shown, f"more than {self.limits.max_depth} levels below the top Collection; not "
                                        "followed (raise max_depth)")
            return
        if len(self.documents) >= self.limits.max_documents:
            self._member_problem(shown, f"the catalog already read {self.limits.max_documents} documents "
                                        "(max_documents); not followed")
            return
        if _is_http(parent) and not _is_http(member):
            self._member_problem(shown, "a Collection served over http(s) may only list http(s) documents")
            return
        self.seen.add(_doc_key(member))
        try:
            doc = self.fetcher.fetch(member)
            document = _parse_json(_decode(doc.data, shown), shown)
            kind = _iiif_kind(document, shown)
            self._visit(member, document, kind, depth)
        except CatalogError as exc:
            self._member_problem(shown, str(exc))

    def _member_problem(self, shown: str, reason: str) -> None:
        self.problems.append(CatalogProblem(None, shown, reason, kind="catalog"))

    def _manifest(self, uri: str, document: dict, version: int) -> None:
        shown = redact_uri(uri)
        canvases = _manifest_canvases(document, version)
        if not canvases:
            where = "items" if version == 3 else "sequences[0].canvases"
            raise CatalogError(f"catalog {shown}: IIIF {version} Manifest has no Canvases ({where} is missing or "
                               "empty)")
        manifest_id = _id_of(document) or uri
        common = _descriptive_fields(document, version)
        images_must_be_http = _is_http(uri)
        for index, canvas in enumerate(canvases):
            self.canvases += 1
            self._canvas(canvas, index, manifest_id, common, version, images_must_be_http)

    def _canvas(self, canvas: Any, index: int, manifest_id: str, common: dict[str, str | None], version: int,
                images_must_be_http: bool) -> None:
        canvas_id = _id_of(canvas) if isinstance(canvas, dict) else None
        where = f"{redact_uri(manifest_id)} canvas {index}"
        if not canvas_id:
            self.problems.append(CatalogProblem(None, where, "canvas has no id, so it cannot get a stable "
                                                "painting_id; the museum's manifest needs fixing"))
            return
        painting_id = self.ids.allocate(canvas_id)
        try:
            image_uri = _canvas_image_uri(canvas, version, self.limits.max_image_size)
        except ValueError as exc:
            self.problems.append(CatalogProblem(painting_id, canvas_id, str(exc)))
            return
        if images_must_be_http and not _HTTP.match(image_uri):
            self.problems.append(CatalogProblem(painting_id, canvas_id, f"image {redact_uri(image_uri)!r} is not an "
                                                "http(s) URL; a manifest served over http(s) may not point at "
                                                "local files or buckets"))
            return
        own = _descriptive_fields(canvas, version)
        row: dict[str, Any] = {"painting_id": painting_id, "image_uri": image_uri}
        row.update({k: own[k] if own[k] is not None else common[k] for k in own})
        row.update({"iiif_manifest": manifest_id, "iiif_canvas": canvas_id})
        self.rows.append(row)


def _doc_key(uri: str) -> str:
    """Documents count as the same when they differ only in fragment or a trailing slash."""
    return uri.split("#", 1)[0].rstrip("/")


def _id_of(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return obj if isinstance(obj, str) and obj else None
    value = obj.get("id") if isinstance(obj.get("id"), str) else obj.get("@id")
    return value if isinstance(value, str) and value else None


def _type_of(obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    value = obj.get("type") if isinstance(obj.get("type"), str) else obj.get("@type")
    return value if isinstance(value, str) else ""


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _collection_members(document: dict, version: int) -> Iterator[str]:
    """Ids of the Manifests and Collections a Collection lists, in document order."""
    if version == 3:
        candidates = _as_list(document.get("items"))
    else:
        candidates = (_as_list(document.get("collections")) + _as_list(document.get("manifests"))
                      + _as_list(document.get("members")))
    for member in candidates:
        if _type_of(member).split(":")[-1] in ("Manifest", "Collection", "") and _id_of(member):
            yield _id_of(member)


def _manifest_canvases(document: dict, version: int) -> list:
    if version == 3:
        return _as_list(document.get("items"))
    sequences = _as_list(document.get("sequences"))
    first = sequences[0] if sequences and isinstance(sequences[0], dict) else {}
    return _as_list(first.get("canvases"))


# ---- the image of a canvas


def _canvas_image_uri(canvas: dict, version: int, max_size: int) -> str:
    """URL of the canvas's painted image, at a bounded size when an Image API service is given.

    ValueError with the specific reason when the canvas paints no (readable) image.
    """
    body = _painting_body(canvas) if version == 3 else _painting_resource_v2(canvas)
    service = _image_service(body)
    if service is not None:
        return _bounded_image_url(service, body, max_size)
    image_id = _id_of(body)
    if not image_id:
        raise ValueError("the canvas's image has no id and no IIIF Image API service")
    return image_id


def _painting_body(canvas: dict) -> dict:
    """First image body of the canvas's painting annotations (v3), the default item of a Choice."""
    pages = _as_list(canvas.get("items"))
    if not pages:
        raise ValueError("canvas has no painting annotations (its items are empty): no image to read")
    seen_types = []
    for page in pages:
        if isinstance(page, dict) and not page.get("items") and _id_of(page):
            raise ValueError(f"canvas's painting annotations are in an external AnnotationPage "
                             f"({redact_uri(_id_of(page))}), which is not followed")
        for annotation in _as_list(page.get("items") if isinstance(page, dict) else None):
            if not isinstance(annotation, dict) or not _is_painting(annotation.get("motivation")):
                continue
            for body in _as_list(annotation.get("body")):
                body = _resolve_body(body)
                body_type = _type_of(body)
                if body_type.lower() in _IMAGE_TYPES:
                    return body
                seen_types.append(body_type or "an untyped body")
    if seen_types:
        raise ValueError(f"canvas paints {', '.join(dict.fromkeys(seen_types))}, not an Image; only still images "
                         "can become 3D heads")
    raise ValueError("canvas has no painting annotation with an Image body")


def _is_painting(motivation: Any) -> bool:
    values = _as_list(motivation)
    return not values or any(isinstance(m, str) and m.split(":")[-1] == "painting" for m in values)


def _resolve_body(body: Any) -> Any:
    """A Choice becomes its first (default) item; a SpecificResource its source."""
    for _ in range(4):  # bounded: a Choice of SpecificResources of ...
        body_type = _type_of(body).lower()
        if body_type in _CHOICE_TYPES:
            items = _as_list(body.get("items")) or _as_list(body.get("default")) + _as_list(body.get("item"))
            body = items[0] if items else None
        elif body_type in ("specificresource", "oa:specificresource"):
            body = body.get("source") or body.get("full")
        else:
            return body
    return body


def _painting_resource_v2(canvas: dict) -> dict:
    """images[*].resource of a 2.1 canvas (sc:painting), the default of an oa:Choice."""
    images = _as_list(canvas.get("images"))
    if not images:
        raise ValueError("canvas has no images: no painting annotation to read")
    seen_types = []
    for annotation in images:
        if not isinstance(annotation, dict) or not _is_painting(annotation.get("motivation")):
            continue
        resource = _resolve_body(annotation.get("resource"))
        resource_type = _type_of(resource)
        fmt = resource.get("format", "") if isinstance(resource, dict) else ""
        if resource_type.lower() in _IMAGE_TYPES or (not resource_type and str(fmt).startswith("image/")):
            return resource
        seen_types.append(resource_type or "an untyped resource")
    if seen_types:
        raise ValueError(f"canvas paints {', '.join(dict.fromkeys(seen_types))}, not an image; only still images "
                         "can become 3D heads")
    raise ValueError("canvas has no sc:painting image annotation")


def _image_service(body: dict) -> dict | None:
    """The body's IIIF Image API service (v3 `service[]` with id/type, v2 `service` with @id/profile)."""
    for service in _as_list(body.get("service")):
        if not isinstance(service, dict) or not _id_of(service):
            continue
        kind = _type_of(service)
        profile = " ".join(str(p) for p in _as_list(service.get("profile")) if isinstance(p, str))
        if kind in ("ImageService2", "ImageService3", "ImageService1") or "iiif.io/api/image" in profile \
                or "iiif.io/api/image" in str(service.get("@context", "")):
            return service
    return None


def _image_api_version(service: dict) -> int:
    context = str(service.get("@context", ""))
    if _type_of(service) == "ImageService3" or "iiif.io/api/image/3" in context:
        return 3
    return 2


def _bounded_image_url(service: dict, body: dict, max_size: int) -> str:
    """`{service}/full/{size}/0/default.jpg` with the longer side at most `max_size` pixels.

    `!w,h` (best fit in a box) is valid in Image API 2 and 3. An image already within the bound is asked for
    whole (`max`/`full`) so API 2 servers do not upscale it; servers declaring maxWidth/maxHeight get at most
    that; level-0 (static) services only serve their listed `sizes`, so the largest one within the bound is used.
    """
    base = _id_of(service).rstrip("/")
    api = _image_api_version(service)
    whole = "max" if api == 3 else "full"
    bound = min([max_size] + [v for v in (service.get("maxWidth"), service.get("maxHeight"))
                              if isinstance(v, int) and not isinstance(v, bool) and v > 0])
    width = _positive_int(service.get("width")) or _positive_int(body.get("width"))
    height = _positive_int(service.get("height")) or _positive_int(body.get("height"))
    if width and height and max(width, height) <= bound:
        size = whole
    elif _is_level0(service):
        size = _level0_size(service, bound, api) or whole
    else:
        size = f"!{bound},{bound}"
    return f"{base}/full/{size}/0/default.jpg"


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _is_level0(service: dict) -> bool:
    profiles = [p for p in _as_list(service.get("profile")) if isinstance(p, str)]
    return any(p == "level0" or p.endswith("/level0.json") for p in profiles)


def _level0_size(service: dict, bound: int, api: int) -> str | None:
    sizes = [(s.get("width"), s.get("height")) for s in _as_list(service.get("sizes")) if isinstance(s, dict)]
    fitting = [(w, h) for w, h in sizes if _positive_int(w) and _positive_int(h) and max(w, h) <= bound]
    if not fitting:
        return None
    w, h = max(fitting, key=lambda wh: wh[0] * wh[1])
    return f"{w},{h}" if api == 3 else f"{w},"


# ---- descriptive metadata


def _descriptive_fields(obj: dict, version: int) -> dict[str, str | None]:
    """title, artist, date, rights, credit_line, source_url of a Manifest or Canvas (None when not given)."""
    artist, date = _metadata_fields(obj.get("metadata"))
    if version == 3:
        rights = _first_http(obj.get("rights"))
        statement = obj.get("requiredStatement")
        credit = _text(statement.get("value")) if isinstance(statement, dict) else None
        source = _first_http([_id_of(h) for h in _as_list(obj.get("homepage"))])
    else:
        rights = _first_http(obj.get("license"))
        credit = _text(obj.get("attribution"))
        source = _first_http([_id_of(r) for r in _as_list(obj.get("related"))])
    return {"title": _text(obj.get("label")), "artist": artist, "date": date, "rights": rights,
            "credit_line": credit, "source_url": source}


def _metadata_fields(metadata: Any) -> tuple[str | None, str | None]:
    """(artist, date) from metadata entries whose label, in any language, names them."""
    found: dict[str, list[str]] = {"artist": [], "date": []}
    for entry in _as_list(metadata):
        if not isinstance(entry, dict):
            continue
        labels = {_label_key(text) for _, text in _language_values(entry.get("label"))}
        column = "artist" if labels & ARTIST_LABELS else "date" if labels & DATE_LABELS else None
        value = _text(entry.get("value"))
        if column and value:
            found[column].append(value)
    return tuple("; ".join(found[c]) or None for c in ("artist", "date"))  # type: ignore[return-value]


def _label_key(text: str) -> str:
    """'Artist / Maker:' -> 'artist/maker': case, a trailing colon and spacing do not matter."""
    text = re.sub(r"\s*/\s*", "/", text.strip().rstrip(":").strip().lower())
    return re.sub(r"\s+", " ", text)


def _language_values(value: Any) -> list[tuple[str, str]]:
    """(language, text) pairs of a v3 language map or a v2 string / {"@value", "@language"} / list of those."""
    if value is None:
        return []
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [("none", str(value))]
    if isinstance(value, list):
        return [pair for item in value for pair in _language_values(item) if not isinstance(item, list)]
    if isinstance(value, dict):
        if "@value" in value:
            text = value.get("@value")
            lang = value.get("@language")
            return [(lang if isinstance(lang, str) and lang else "none", str(text))] \
                if isinstance(text, (str, int, float)) and not isinstance(text, bool) else []
        return [(str(lang), str(text)) for lang, texts in value.items() for text in _as_list(texts)
                if isinstance(text, (str, int, float)) and not isinstance(text, bool)]
    return []


def _text(value: Any) -> str | None:
    """One display string: English, else no-language, else the first language; several values joined by '; '."""
    pairs = [(lang, text.strip()) for lang, text in _language_values(value) if text.strip()]
    if not pairs:
        return None
    langs = list(dict.fromkeys(lang for lang, _ in pairs))
    chosen = next((lang for lang in langs if lang.lower() == "en"), None) \
        or next((lang for lang in langs if lang.lower().startswith("en-")), None) \
        or ("none" if "none" in langs else langs[0])
    return "; ".join(text for lang, text in pairs if lang == chosen)


def _first_http(value: Any) -> str | None:
    for item in _as_list(value):
        item = _id_of(item) if isinstance(item, dict) else item
        if isinstance(item, str) and _HTTP.match(item.strip()):
            return item.strip()
    return None


# ---- painting ids


class _IdAllocator:
    """Stable, folder-safe, case-insensitively unique painting ids from canvas ids, in document order."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def allocate(self, canvas_id: str) -> str:
        base = painting_id_from_canvas(canvas_id)
        candidate, n = base, 1
        while candidate.lower() in self.used:
            n += 1
            candidate = f"{base}-{n}"
        self.used.add(candidate.lower())
        return candidate


def painting_id_from_canvas(canvas_id: str) -> str:
    """`<readable tail of the canvas id>-<8 hex of sha256(canvas id)>`, e.g. `SK-A-1234-p1-1a2b3c4d`.

    The tail keeps ids readable in the output folder; the hash keeps them stable across runs and distinct
    across manifests whose canvases end alike ("canvas/1"). Always matches SAFE_ID_PATTERN.
    """
    digest = hashlib.sha256(canvas_id.encode("utf-8")).hexdigest()[:_HASH_HEX]
    slug = _slug(canvas_id)[:_SLUG_MAX].strip("._-")
    pid = f"{slug}-{digest}" if slug else f"canvas-{digest}"
    return pid[:MAX_ID_LENGTH - 8]  # room for a "-NNN" duplicate suffix


def _slug(canvas_id: str) -> str:
    parts = urlsplit(canvas_id) if "://" in canvas_id else None
    path = parts.path if parts else canvas_id.split("?", 1)[0].split("#", 1)[0]
    segments = path.split("/") + ([parts.fragment] if parts and parts.fragment else [])
    cleaned = [_clean_segment(s) for s in segments]
    meaningful = [s for s in cleaned if s and s.lower() not in _GENERIC_SEGMENTS]
    return "-".join(meaningful[-_SLUG_SEGMENTS:])


def _clean_segment(segment: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", segment).encode("ascii", "ignore").decode("ascii")
    text = _NOT_ID_CHARS.sub("-", ascii_text)
    text = re.sub(r"[-]{2,}", "-", text)
    return text.strip("._-")


# ----------------------------------------------------------------------------------------------- table build


def _known_array(name: str, values: list[Any], type_: pa.DataType) -> pa.Array:
    prepared = [_prepare_known(name, v, type_) for v in values]
    for attempt in (lambda: pa.array(prepared, type_), lambda: pa.array(values),
                    lambda: pa.array([None if v is None else str(v) for v in values], pa.string())):
        try:
            return attempt()
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            continue
    raise AssertionError("unreachable: strings always convert")


def _prepare_known(name: str, value: Any, type_: pa.DataType) -> Any:
    """Values as the schema type wants them: list crops as structs, integer years as text, ints as floats."""
    if value is None:
        return None
    if pa.types.is_struct(type_) and isinstance(value, (list, tuple)):
        # A list (crop [x, y, w, h]) becomes the struct; a wrong length a struct of nulls, which
        # validate_manifest reports for its row.
        names = [type_.field(i).name for i in range(type_.num_fields)]
        return dict(zip(names, value)) if len(value) == len(names) else dict.fromkeys(names)
    if name == "date" and isinstance(value, (int, dt.date)) and not isinstance(value, bool):
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if pa.types.is_floating(type_) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _pass_through_array(values: list[Any]) -> pa.Array:
    if all(v is None or isinstance(v, str) for v in values):
        return pa.array(values, pa.string())
    try:
        return pa.array(values)  # Parquet pass-through columns keep their type
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


__all__ = ["ARTIST_LABELS", "Catalog", "CatalogError", "CatalogProblem", "DATE_LABELS",
           "PASS_THROUGH_IIIF", "catalog_table", "painting_id_from_canvas", "read_catalog"]
