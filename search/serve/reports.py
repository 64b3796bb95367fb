"""HTTP routes for batch similarity reports: start one as a background job, poll its status, fetch its files.

Reports are written to `<index_dir>/reports/<job_id>/`; one runs at a time (they use every core), others queue.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from search.errors import NotFound, SearchError
from search.reports.results import ReportSummary
from search.reports.run import ReportOptions
from search.service import SearchService

log = logging.getLogger(__name__)

router = APIRouter(prefix="/reports", tags=["reports"])

_KEEP_JOBS = 50
_MEDIA = {".csv": "text/csv; charset=utf-8", ".json": "application/json", ".html": "text/html; charset=utf-8"}
_STATE_LOCK = threading.Lock()


def _field(name: str) -> Any:
    return Field(ReportOptions.default(name), description=ReportOptions.help(name))


class ReportRequest(BaseModel):
    """What to compare; every field is optional (defaults and descriptions: `ReportOptions`)."""

    k: int = _field("k")
    threshold: list[str] = Field(default_factory=list, description=ReportOptions.help("thresholds"))
    articles: list[str] = Field(default_factory=list, description=ReportOptions.help("articles"))
    langs: list[str] = Field(default_factory=list, description=ReportOptions.help("langs"))
    within_article: bool | None = _field("within_article")
    align: list[str] | None = Field(None, min_length=2, max_length=2, description=ReportOptions.help("align"))
    fdr: float = _field("fdr")
    related_quantile: float = _field("related_quantile")
    dup_threshold: float = _field("dup_threshold")
    length_ratio: float = _field("length_ratio")
    approximate: bool = _field("approximate")
    top: int = _field("top")

    def options(self) -> ReportOptions:
        return ReportOptions(
            k=self.k,
            thresholds=tuple(self.threshold),
            articles=tuple(self.articles),
            langs=tuple(self.langs),
            within_article=self.within_article,
            align=(self.align[0], self.align[1]) if self.align else None,
            related_quantile=self.related_quantile,
            dup_threshold=self.dup_threshold,
            fdr=self.fdr,
            length_ratio=self.length_ratio,
            approximate=self.approximate,
            top=self.top,
        )


class ReportErrorOut(BaseModel):
    code: str
    message: str


class ReportFileOut(BaseModel):
    name: str
    url: str
    bytes: int


class ReportJobOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    stage: str | None = Field(None, description="the stage running now")
    stage_progress: float = Field(0.0, description="share of the current stage done, 0..1")
    created_at: str
    finished_at: str | None = None
    error: ReportErrorOut | None = None
    summary: dict[str, Any] | None = Field(None, description="summary.json: counts, calibration, seconds per stage")
    files: list[ReportFileOut] = Field(default_factory=list)


@dataclass
class _Job:
    job_id: str
    options: ReportOptions
    out_dir: Path
    status: Literal["queued", "running", "done", "failed"] = "queued"
    stage: str | None = None
    stage_progress: float = 0.0
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    finished_at: str | None = None
    error: ReportErrorOut | None = None
    summary: ReportSummary | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def out(self) -> ReportJobOut:
        files = [] if self.summary is None else self.summary.files
        return ReportJobOut(
            job_id=self.job_id,
            status=self.status,
            stage=self.stage,
            stage_progress=round(self.stage_progress, 3),
            created_at=self.created_at,
            finished_at=self.finished_at,
            error=self.error,
            summary=None if self.summary is None else self.summary.as_dict(),
            files=[
                ReportFileOut(name=f, url=f"/reports/{self.job_id}/files/{f}", bytes=(self.out_dir / f).stat().st_size)
                for f in files
                if (self.out_dir / f).is_file()
            ],
        )


class ReportJobs:
    """The jobs of one app; a lock lets one report run at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs: dict[str, _Job] = {}
        self._run_lock = threading.Lock()
        self._lock = threading.Lock()

    def submit(self, source: SearchService, options: ReportOptions) -> _Job:
        job_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
        job = _Job(job_id, options, self.root / job_id)
        with self._lock:
            self.jobs[job_id] = job
            for old in list(self.jobs)[:-_KEEP_JOBS]:
                if self.jobs[old].status in ("done", "failed"):
                    del self.jobs[old]
        threading.Thread(target=self._run, args=(job, source), name=f"report-{job_id}", daemon=True).start()
        return job

    def _run(self, job: _Job, source: SearchService) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            job.stage, job.stage_progress = stage, done / max(total, 1)

        with self._run_lock:
            job.status = "running"
            status: Literal["done", "failed"] = "failed"
            try:
                job.summary = source.report(job.options, job.out_dir, progress)
                status = "done"
            except SearchError as exc:
                job.error = ReportErrorOut(code=exc.code, message=str(exc))
            except Exception as exc:
                log.exception("report %s failed", job.job_id)
                job.error = ReportErrorOut(code="internal_error", message=f"{type(exc).__name__}: {exc}")
            finally:
                job.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
                job.stage, job.status = None, status
                job.finished.set()

    def all(self) -> list[_Job]:
        with self._lock:
            return list(self.jobs.values())

    def get(self, job_id: str) -> _Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no report job {job_id!r}; start one with POST /reports")
        return job


def _jobs(request: Request) -> ReportJobs:
    state = request.app.state
    with _STATE_LOCK:
        if getattr(state, "report_jobs", None) is None:
            state.report_jobs = ReportJobs(Path(state.service.settings.index_dir) / "reports")
    jobs: ReportJobs = state.report_jobs
    return jobs


@router.post("", response_model=ReportJobOut, status_code=202, summary="Start a similarity report")
def start_report(request: Request, body: ReportRequest, response: Response, wait: bool = False) -> ReportJobOut:
    """Runs in the background; poll `GET /reports/{job_id}`. With `wait=true` the answer comes when it is done."""
    options = body.options()
    options.validate()
    jobs = _jobs(request)
    job = jobs.submit(request.app.state.service, options)
    if wait:
        job.finished.wait()
        response.status_code = 200
    return job.out()


@router.get("", response_model=list[ReportJobOut], summary="List report jobs, newest last")
def list_reports(request: Request) -> list[ReportJobOut]:
    return [job.out() for job in _jobs(request).all()]


@router.get("/{job_id}", response_model=ReportJobOut, summary="Status, summary and files of a report")
def get_report(request: Request, job_id: str) -> ReportJobOut:
    return _jobs(request).get(job_id).out()


@router.get("/{job_id}/files/{name}", response_class=FileResponse, summary="One file of a finished report")
def get_report_file(request: Request, job_id: str, name: str) -> FileResponse:
    job = _jobs(request).get(job_id)
    if job.summary is None or name not in job.summary.files:
        have = ", ".join(job.summary.files) if job.summary else f"none yet (status {job.status})"
        raise NotFound(f"report {job_id} has no file {name!r}; its files: {have}")
    return FileResponse(job.out_dir / name, media_type=_MEDIA.get(Path(name).suffix, "application/octet-stream"))
