"""Datasets in the catalog: list and show, upload new versions, quality suites and results,
acceptance of quarantined versions, and column tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as FastAPIPath
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import File, MultipartParser, parse_options_header

from govern.api.deps import GatewayDep, require
from govern.api.errors import ErrorOut
from govern.auth import Action, Caller
from govern.catalog import DatasetInfo
from govern.catalog.scratch import Claim, claim_folder, disk_errors, release_folder
from govern.catalog.service import TagProposal
from govern.errors import BadRequest
from govern.quality import IngestResult

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 20
_MAX_HEADER_BYTES = 8 * 1024
_WRITE_BUFFER = 1 << 20


class TagOut(BaseModel):
    tag: str
    source: str
    confirmed: bool
    detector: str | None
    score: float | None


class ColumnOut(BaseModel):
    name: str
    type: str
    tags: list[str]


class DatasetOut(BaseModel):
    """The fixed shape of ``GET /v1/datasets`` (DESIGN.md)."""

    name: str
    version: int
    columns: list[ColumnOut]
    subject_column: str
    row_count: int
    description: str

    @classmethod
    def of(cls, info: DatasetInfo) -> DatasetOut:
        return cls(
            name=info.name,
            version=info.version,
            columns=[ColumnOut(name=c.name, type=c.type, tags=list(c.tags)) for c in info.columns],
            subject_column=info.subject_column,
            row_count=info.row_count,
            description=info.description,
        )


class ColumnDetailOut(ColumnOut):
    tag_details: list[TagOut]


class DatasetDetailOut(BaseModel):
    """One version with its state and where each tag came from (stewards' routes)."""

    name: str
    version: int
    state: str
    columns: list[ColumnDetailOut]
    subject_column: str
    row_count: int
    description: str

    @classmethod
    def of(cls, info: DatasetInfo) -> DatasetDetailOut:
        return cls(
            name=info.name,
            version=info.version,
            state=info.state,
            columns=[
                ColumnDetailOut(
                    name=c.name,
                    type=c.type,
                    tags=list(c.tags),
                    tag_details=[TagOut(**t.__dict__) for t in c.tag_details],
                )
                for c in info.columns
            ],
            subject_column=info.subject_column,
            row_count=info.row_count,
            description=info.description,
        )


class ProposalOut(BaseModel):
    column: str
    tag: str
    detector: str
    score: float

    @classmethod
    def of(cls, p: TagProposal) -> ProposalOut:
        return cls(column=p.column, tag=p.tag, detector=p.detector, score=p.score)


class IngestOut(DatasetDetailOut):
    format: str
    suite_inferred: bool
    validation: dict[str, Any]
    proposed_tags: list[ProposalOut]

    @classmethod
    def of_result(cls, r: IngestResult) -> IngestOut:
        base = DatasetDetailOut.of(r.info)
        return cls(
            **base.model_dump(),
            format=r.format,
            suite_inferred=r.suite_inferred,
            validation=r.report.to_json(),
            proposed_tags=[ProposalOut.of(p) for p in r.proposals],
        )


class SuiteIn(BaseModel):
    expectations: list[dict[str, Any]] = Field(max_length=500)


class SuiteOut(BaseModel):
    dataset: str
    expectations: list[dict[str, Any]]
    inferred: bool
    updated_by: str
    updated_at: datetime


class QualityOut(BaseModel):
    dataset: str
    version: int
    state: str
    success: bool
    accepted_by: str | None
    accepted_at: datetime | None
    result: dict[str, Any]


class TagsIn(BaseModel):
    tags: list[str] = Field(max_length=50)


Reader = Annotated[Caller, Depends(require(Action.DATASETS_READ))]
# A version number as the store keeps it (a 32-bit integer); larger is a 422, not an overflow.
Version = Annotated[int, FastAPIPath(ge=1, le=2**31 - 1)]
Writer = Annotated[Caller, Depends(require(Action.DATASETS_WRITE))]


@router.get("", response_model=list[DatasetOut])
def list_datasets(gateway: GatewayDep, _: Reader) -> list[DatasetOut]:
    return [DatasetOut.of(d) for d in gateway.queries.datasets()]


@dataclass
class _Form:
    """A multipart form received to the end: text fields, and the file on disk."""

    folder: Claim
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    path: Path | None = None
    size: int = 0
    _files: list[Any] = field(default_factory=list)

    def text(self, name: str, required: bool = True) -> str:
        value = self.fields.get(name)
        if value is None:
            if required:
                raise BadRequest(f"the form needs a {name!r} field", details={"field": name})
            return ""
        return value

    def close(self) -> None:
        for f in self._files:
            f.close()  # the temporary file is deleted on close
        release_folder(self.folder)


class _Parts:
    """Callbacks for python-multipart's streaming parser. Text fields are held in memory, so
    they are bounded here, while they arrive: python-multipart's FormParser declares
    MAX_FIELD_SIZE and MAX_FIELDS but does not enforce them for multipart bodies, which let a
    single field hold a whole upload's worth of bytes in memory. The one file part goes to a
    temporary file under GOVERN_HOME."""

    def __init__(self, form: _Form, folder: Path) -> None:
        self.form = form
        self.config: Any = {
            "UPLOAD_DIR": str(folder),
            "UPLOAD_DELETE_TMP": True,
            # Straight to disk: nothing of the file is kept in memory.
            "MAX_MEMORY_FILE_SIZE": 0,
        }
        self.headers: dict[bytes, bytes] = {}
        self.header = bytearray()
        self.header_name = b""
        self.name = ""
        self.value: bytearray | None = None
        self.file: File | None = None

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.headers = {}

    def _grow_header(self, data: bytes, start: int, end: int) -> None:
        self.header += data[start:end]
        if len(self.header) > _MAX_HEADER_BYTES:
            raise BadRequest(f"multipart part headers are at most {_MAX_HEADER_BYTES} bytes")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._grow_header(data, start, end)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        if not self.header_name:
            self.header_name, self.header = bytes(self.header).lower(), bytearray()
        self._grow_header(data, start, end)

    def on_header_end(self) -> None:
        if self.header_name:
            self.headers[self.header_name] = bytes(self.header).strip(b" \t")
        else:  # a header with an empty value never called on_header_value
            self.headers[bytes(self.header).lower()] = b""
        self.header_name, self.header = b"", bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        name, filename = options.get(b"name"), options.get(b"filename")
        if name is None:
            raise BadRequest("every multipart part needs a Content-Disposition name")
        encoding = self.headers.get(b"content-transfer-encoding", b"binary").lower()
        if encoding not in (b"binary", b"8bit", b"7bit"):
            raise BadRequest("multipart parts are sent as they are (no transfer encoding)")
        self.name = name.decode("utf-8", "replace")
        if filename is None:
            if len(self.form.fields) >= _MAX_FIELDS:
                raise BadRequest(f"at most {_MAX_FIELDS} form fields")
            self.value, self.file = bytearray(), None
            return
        if self.form._files:
            raise BadRequest("upload exactly one file")
        self.file = File(filename, name, config=self.config)
        self.form._files.append(self.file)
        self.value = None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.file is not None:
            self.file.write(data[start:end])
            return
        assert self.value is not None
        self.value += data[start:end]
        if len(self.value) > _MAX_FIELD_BYTES:
            raise BadRequest(
                f"form fields are at most {_MAX_FIELD_BYTES} bytes",
                details={"field": self.name[:64]},
            )

    def on_part_end(self) -> None:
        if self.file is None:
            self.form.fields[self.name] = bytes(self.value or b"").decode("utf-8", "replace")
            return
        self.file.finalize()
        self.form.filename = (self.file.file_name or b"").decode("utf-8", "replace")[:200]
        self.form.size = self.file.size
        if self.file.actual_file_name is not None:
            self.form.path = Path(self.file.actual_file_name.decode())
        self.file = None


async def _receive_form(request: Request, folder: Path) -> _Form:
    """Stream a multipart body: the file part goes straight to a temporary file under
    ``folder`` (GOVERN_HOME), 1 MiB at a time, so an upload is never held whole in memory."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadRequest("upload with multipart/form-data: name, subject_column and file")
    # A folder of this request's own, locked while it lives: after a crash the next gateway
    # to open sweeps it (and only then: another process may be receiving an upload).
    with disk_errors():
        form = _Form(claim_folder(folder))
    parser = MultipartParser(boundary, _Parts(form, form.folder.path).callbacks())
    buffer = bytearray()
    try:
        with disk_errors():
            async for chunk in request.stream():
                buffer += chunk
                if len(buffer) >= _WRITE_BUFFER:
                    # Disk writes leave the event loop, a megabyte at a time.
                    await run_in_threadpool(parser.write, bytes(buffer))
                    buffer.clear()
            await run_in_threadpool(parser.write, bytes(buffer))
            parser.finalize()
    except FormParserError as exc:
        form.close()
        raise BadRequest("malformed multipart body", details={"reason": str(exc)[:200]}) from exc
    except BaseException:
        form.close()
        raise
    if form.path is None:
        form.close()
        raise BadRequest("the form needs a non-empty 'file' part")
    return form


@router.post(
    "",
    response_model=IngestOut,
    status_code=201,
    responses={
        507: {"model": ErrorOut, "description": "no space left under GOVERN_HOME (storage_full)"}
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["name", "subject_column", "file"],
                        "properties": {
                            "name": {"type": "string"},
                            "subject_column": {"type": "string"},
                            "file": {"type": "string", "format": "binary"},
                            "description": {"type": "string"},
                            "unique_columns": {
                                "type": "string",
                                "description": "comma-separated; first version only",
                            },
                        },
                    }
                }
            },
        }
    },
)
async def upload_dataset(request: Request, gateway: GatewayDep, caller: Writer) -> IngestOut:
    """Register a Parquet or CSV upload as a new immutable version, validated and tagged."""
    form = await _receive_form(request, gateway.settings.uploads_dir)
    try:
        assert form.path is not None
        unique = [c.strip() for c in form.text("unique_columns", False).split(",") if c.strip()]
        result = await run_in_threadpool(
            gateway.commands.ingest,
            form.text("name"),
            form.path,
            form.text("subject_column"),
            caller.id,
            filename=form.filename,
            description=form.text("description", False)[:2000],
            unique_columns=unique,
        )
    finally:
        form.close()
    return IngestOut.of_result(result)


@router.get("/{name}", response_model=DatasetDetailOut)
def get_dataset(name: str, gateway: GatewayDep, _: Reader) -> DatasetDetailOut:
    return DatasetDetailOut.of(gateway.queries.dataset(name))


@router.get("/{name}/versions", response_model=list[DatasetDetailOut])
def list_versions(name: str, gateway: GatewayDep, _: Reader) -> list[DatasetDetailOut]:
    return [DatasetDetailOut.of(d) for d in gateway.queries.versions(name)]


@router.get("/{name}/versions/{version}/quality", response_model=QualityOut)
def get_quality(name: str, version: Version, gateway: GatewayDep, _: Reader) -> QualityOut:
    r = gateway.queries.quality_result(name, version)
    return QualityOut(
        dataset=r.dataset,
        version=r.version,
        state=r.state,
        success=r.success,
        accepted_by=r.accepted_by,
        accepted_at=r.accepted_at,
        result=r.result,
    )


@router.post("/{name}/versions/{version}/accept", response_model=DatasetDetailOut)
def accept_version(
    name: str, version: Version, gateway: GatewayDep, caller: Writer
) -> DatasetDetailOut:
    return DatasetDetailOut.of(gateway.commands.accept_version(name, version, caller.id))


def _suite_out(info: Any) -> SuiteOut:
    return SuiteOut(
        dataset=info.dataset,
        expectations=info.suite["expectations"],
        inferred=info.inferred,
        updated_by=info.updated_by,
        updated_at=info.updated_at,
    )


@router.get("/{name}/suite", response_model=SuiteOut)
def get_suite(name: str, gateway: GatewayDep, _: Reader) -> SuiteOut:
    return _suite_out(gateway.queries.suite(name))


@router.put("/{name}/suite", response_model=SuiteOut)
def put_suite(name: str, body: SuiteIn, gateway: GatewayDep, caller: Writer) -> SuiteOut:
    return _suite_out(gateway.commands.put_suite(name, body.model_dump(), caller.id))


@router.put("/{name}/columns/{column}/tags", response_model=DatasetDetailOut)
def put_tags(
    name: str, column: str, body: TagsIn, gateway: GatewayDep, caller: Writer
) -> DatasetDetailOut:
    return DatasetDetailOut.of(gateway.commands.set_tags(name, column, body.tags, caller.id))
