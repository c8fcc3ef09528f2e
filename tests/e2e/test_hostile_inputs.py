"""A corpus of hostile files and requests, generated here: each gets a clear 4xx or an actionable ``failed``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfWriter

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import wait_for_status


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hostile") / "data",
        llm_backend="none",
        max_pdf_pages=500,
        max_upload_mb=50,
        _env_file=None,
    )
    with TestClient(create_app(settings)) as c:
        c.post("/v1/collections", json={"name": "h"})
        yield c


def upload(client: TestClient, name: str, data: bytes) -> Any:
    return client.post("/v1/collections/h/documents", files={"file": (name, data)})


def outcome(client: TestClient, name: str, data: bytes) -> dict:
    response = upload(client, name, data)
    assert response.status_code == 202, response.text
    return wait_for_status(client, response.json()["id"], timeout=300)


def blank_pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=72, height=72)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def nested_pdf(depth: int) -> bytes:
    """A syntactically valid PDF whose one object nests arrays ``depth`` deep."""
    body = b"[" * depth + b"]" * depth
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] /Contents 4 0 R /Foo 5 0 R >>",
        b"<< /Length 0 >>\nstream\n\nendstream",
        body,
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def test_damaged_and_malicious_pdfs_fail_with_a_reason(client: TestClient, pdf_dir: Path) -> None:
    real = (pdf_dir / "pdflatex-4-pages.pdf").read_bytes()
    cases = {
        "truncated.pdf": (real[: len(real) // 3], "damaged"),
        "corrupt.pdf": (b"%PDF-1.4\n" + bytes(range(256)) * 40, ""),
        "encrypted.pdf": ((pdf_dir / "libreoffice-writer-password.pdf").read_bytes(), "password"),
        "scanned.pdf": ((pdf_dir / "imagemagick-images.pdf").read_bytes(), "OCR"),
        "many-pages.pdf": (blank_pdf(600), "pages"),
        "nested.pdf": (nested_pdf(200_000), ""),
    }
    for name, (data, hint) in cases.items():
        done = outcome(client, name, data)
        assert done["status"] == "failed", (name, done)
        assert done["error"] and hint.lower() in done["error"].lower(), (name, done["error"])
        assert "Traceback" not in done["error"]


def test_parsing_is_bounded_in_time_and_memory(client: TestClient, pdf_dir: Path) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    book = (pdf_dir / "GeoTopo-komprimiert.pdf").read_bytes()
    original = services.settings.parse_timeout_s, services.settings.parse_memory_mb
    try:
        services.settings.parse_timeout_s = 0.05
        slow = outcome(client, "slow.pdf", book)
        assert slow["status"] == "failed" and "longer than" in slow["error"]
        services.settings.parse_timeout_s, services.settings.parse_memory_mb = 120, 40
        hungry = outcome(client, "hungry.pdf", book + b"\n% different bytes\n")
        assert hungry["status"] == "failed" and "MB" in hungry["error"], hungry["error"]
    finally:
        services.settings.parse_timeout_s, services.settings.parse_memory_mb = original
    healthy = outcome(client, "fine.pdf", (pdf_dir / "crazyones-pdfa.pdf").read_bytes())
    assert healthy["status"] == "indexed"  # the worker survived both


def test_types_are_sniffed_not_trusted(client: TestClient) -> None:
    text_named_pdf = outcome(client, "notes.pdf", b"Plain text notes that only pretend to be a PDF file.")
    assert text_named_pdf["status"] == "indexed" and text_named_pdf["content_type"] == "text"
    broken_png_named_txt = outcome(client, "photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(512))
    assert broken_png_named_txt["content_type"] == "image" and broken_png_named_txt["status"] == "failed"
    assert "damaged" in broken_png_named_txt["error"]
    gif_named_txt = upload(client, "anim.txt", b"GIF89a" + bytes(512))
    assert gif_named_txt.status_code == 415 and "GIF" in gif_named_txt.json()["detail"]
    zip_named_md = upload(client, "doc.md", b"PK\x03\x04" + bytes(512))
    assert zip_named_md.status_code == 415
    assert upload(client, "empty.txt", b"").status_code == 422
    latin1 = outcome(client, "latin1.txt", "Café crème brûlée, naïve façade, Größe.".encode("latin-1"))
    assert latin1["status"] == "indexed"
    hit = client.post("/v1/collections/h/query", json={"query": "café crème", "generate": False}).json()
    assert "Café crème" in hit["citations"][0]["text"]


def test_a_100_mb_text_file_is_refused_before_it_is_stored(client: TestClient) -> None:
    big = b"all work and no play makes a dull index\n" * (100 * 1024 * 1024 // 40)
    response = upload(client, "huge.txt", big)
    assert response.status_code == 413 and "50 MB" in response.json()["detail"]
    blobs = client.app.state.services.settings.blob_dir  # type: ignore[attr-defined]
    assert all(p.stat().st_size < 50 * 1024 * 1024 for p in blobs.rglob("*") if p.is_file())


def test_hostile_filenames_are_neutralized(client: TestClient) -> None:
    for raw, expected in [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\evil.txt", "evil.txt"),
        ("bell\x07and\x1b[31mred.txt", "red.txt"),
        ("", "upload"),
    ]:
        done = outcome(client, raw or "x", f"content for {expected} {raw!r}".encode()) if raw else None
        if done is not None:
            assert done["filename"].endswith(expected) and done["filename"].isprintable(), (raw, done["filename"])
            assert "/" not in done["filename"] and "\\" not in done["filename"]


def test_hostile_requests_get_422(client: TestClient) -> None:
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    bad = [
        {"query": 42},
        {"query": "ok", "top_k": -1},
        {"query": "ok", "top_k": 10_000},
        {"query": "ok", "mode": "psychic"},
        {"query": "ok", "filters": {"tags": "not-a-list"}},
        {"query": "ok", "filters": {"unknown_field": 1}},
        {"query": "ok", "filters": {"uploaded_after": "yesterday"}},
        {"query": "x" * (settings.max_query_chars + 1)},
        {"question": "wrong field name"},
    ]
    for body in bad:
        response = client.post("/v1/collections/h/query", json=body)
        assert response.status_code == 422, (body, response.status_code, response.text[:200])
        assert response.json()["detail"]
    not_json = client.post(
        "/v1/collections/h/query", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    metadata = client.post(
        "/v1/collections/h/documents", files={"file": ("a.txt", b"hello")}, data={"metadata": "[1, 2]"}
    )
    assert metadata.status_code == 422 and "JSON object" in metadata.json()["detail"]
