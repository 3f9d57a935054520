"""The browser import of a file over the in-request limit: stored and
pending, its progress on the page and as JSON, imported by the runner's
``contact-import`` job, then the same report as an import in the request.
The limits are small here (1 KB in the request, 1 MB at most) so the files
stay small; both databases."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from app import app_settings
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.extensions import db
from app.models import Contact, JobRun, Role
from app.models.imports import ContactImport
from app.services.background_import import imports_folder
from app.services.runtime_settings import seed_runtime_settings
from jobs import contact_import
from jobs.recording import run_recorded
from jobs.scheduler import JobRunner
from tests.conftest import make_test_app
from tests.web_client import logged_in

KB = 1024


@pytest.fixture
def site(database_url: str, tmp_path: Path, clock: FixedClock) -> Iterator[Flask]:
    app = make_test_app(
        database_url,
        tmp_path / "instance",
        import_inline_max_kilobytes=1,
        import_max_megabytes=1,
    )
    app.config[CLOCK_CONFIG_KEY] = clock
    with app.app_context():
        seed_runtime_settings(db.session, app_settings(app), clock)
        db.session.commit()
        db.session.remove()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(site: Flask) -> FlaskClient:
    return logged_in(site, "mark@example.com", Role.MARKETER)


def upload(client: FlaskClient, data: bytes, name: str = "big.csv") -> TestResponse:
    form = {
        "list_name": "Big list",
        "encoding": "detect",
        "file": (io.BytesIO(data), name),
        "csrf_token": client.sluice_csrf_token,  # type: ignore[attr-defined]
    }
    return client.post("/contacts/import", data=form, content_type="multipart/form-data")


def big_file(rows: int = 60) -> bytes:
    lines = ["email,first name"] + [f"p{n}@example.com,Person {n}" for n in range(rows)]
    lines.insert(5, "not an address,Bad")
    return ("\n".join(lines) + "\n").encode()


def text_of(response: TestResponse) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def field_error(response: TestResponse, key: str) -> str:
    page = response.get_data(as_text=True)
    match = re.search(rf'<p class="field__error" id="{key}-error">(.*?)</p>', page, re.S)
    assert match, f"no error shown for {key}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def run_job(site: Flask) -> JobRun:
    runner = JobRunner(site, runner="test-runner")
    runner.start(paused=True)
    try:
        run_recorded(runner.context, contact_import.JOB_ID, contact_import.run)
    finally:
        runner.stop()
    with site.app_context():
        run = db.session.scalars(
            select(JobRun).where(JobRun.job_id == contact_import.JOB_ID).order_by(JobRun.id.desc())
        ).first()
        assert run is not None
        db.session.expunge(run)
        return run


def test_a_big_upload_waits_with_its_progress_then_the_job_imports_it(
    site: Flask, client: FlaskClient
) -> None:
    data = big_file()
    assert len(data) > KB
    response = upload(client, data, "<script>alert(1)</script>.csv")
    assert response.status_code == 302 and response.headers["Location"] == "/contacts/import"

    page = client.get("/contacts/import")
    text = text_of(page)
    assert "is imported in the background" in text
    assert "Imports in progress" in text
    assert "waiting for the runner (2 KB)" in text
    assert "<script>alert(1)</script>" not in page.get_data(as_text=True)
    with site.app_context():
        record = db.session.scalar(select(ContactImport))
        assert record is not None and record.state == "pending"
        import_id, stored = record.id, record.stored_file
        assert db.session.scalar(select(Contact.id)) is None
    assert (imports_folder(site.instance_path) / stored).exists()

    live = client.get("/contacts/imports/live").get_json()
    assert live == {
        "imports": [
            {
                "id": import_id,
                "state": "pending",
                "progress": "waiting for the runner (2 KB)",
                "done": 0,
                "total": len(data),
            }
        ]
    }
    report = text_of(client.get(f"/contacts/imports/{import_id}"))
    assert "Waiting for the runner" in report and "Refresh" in report

    run = run_job(site)
    assert run.error == ""
    assert run.result == f"import {import_id} done (61 rows)"

    assert client.get("/contacts/imports/live").get_json() == {"imports": []}
    report = text_of(client.get(f"/contacts/imports/{import_id}"))
    assert "Waiting for the runner" not in report
    assert re.search(r"Rows\s+61\s+Created\s+60", report)
    assert "An email address must have an @-sign." in report
    assert re.search(r"Read as\s+UTF-8\s", report)
    download = client.get(f"/contacts/imports/{import_id}/rejected.csv")
    assert download.get_data(as_text=True) == (
        "\ufeffsluice_row,sluice_reason,email,first name\r\n"
        "6,email 'not an address': An email address must have an @-sign.,not an address,Bad\r\n"
    )
    assert list(imports_folder(site.instance_path).iterdir()) == []
    assert "Imports in progress" not in text_of(client.get("/contacts/import"))


def test_the_job_with_nothing_waiting_says_so(site: Flask) -> None:
    run = run_job(site)
    assert (run.result, run.error) == ("no import waiting", "")


def test_a_small_upload_is_still_imported_at_once(site: Flask, client: FlaskClient) -> None:
    response = upload(client, b"email\nann@example.com\n")
    assert "/contacts/imports/" in response.headers["Location"]
    with site.app_context():
        assert db.session.scalar(select(ContactImport.state)) == "done"


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        # Over the maximum (1 MB), within the request's limit (2 MB).
        (b"email\n" + b"a@example.com\n" * (1024 * KB // 14 + 10), 400, "sluice contacts import"),
        # Over the request's limit: refused before it is read.
        (
            b"email\n" + b"a@example.com\n" * (2 * 1024 * KB // 14 + 10),
            413,
            "sluice contacts import",
        ),
        (b"PK\x03\x04" + b"\x00" * 2 * KB, 400, "Excel workbook"),
        (b"name,company\n" + b"Ann,Acme\n" * 200, 400, "no email column"),
    ],
)
def test_a_big_upload_that_cannot_be_imported_stores_nothing(
    site: Flask, client: FlaskClient, data: bytes, status: int, message: str
) -> None:
    response = upload(client, data)
    assert response.status_code == status
    assert message in field_error(response, "file")
    assert list(imports_folder(site.instance_path).iterdir()) == []
    with site.app_context():
        assert db.session.scalar(select(ContactImport.id)) is None
