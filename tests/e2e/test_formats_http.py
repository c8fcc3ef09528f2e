"""Every format over HTTP with the in-process worker: a question whose answer sits only in a DOCX table cell,
a PPTX slide's speaker notes, an XLSX row or a scanned PDF page retrieves that file first. Files are built
here with python-docx, python-pptx, openpyxl and Pillow; the scan goes through Tesseract."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests import documents
from tests.e2e.helpers import wait_for_status

UPLOADS = {
    "suppliers.docx": documents.docx_bytes(
        "Pump programme",
        [("Sourcing", ["Parts for the pump programme come from several suppliers listed below."])],
        table=[
            ["Component", "Supplier", "Lead time"],
            ["Titanium impeller", "Kestrel Foundry", "14 weeks"],
            ["Shaft seal", "Norrland Seals", "3 weeks"],
        ],
    ),
    "handbook.docx": documents.docx_bytes(
        "Employee handbook", [("Leave", ["Annual leave is 25 days.", "Requests go to your manager."])]
    ),
    "launch.pptx": documents.pptx_bytes(
        [
            ("Launch plan", "Dates and venues", "The launch moved to Lisbon because the Porto venue flooded in March."),
            ("Budget", "Marketing spend by quarter", ""),
        ]
    ),
    "training.pptx": documents.pptx_bytes([("Onboarding", "Week one schedule", "Introduce the mentors.")]),
    "greenhouses.xlsx": documents.xlsx_bytes(
        {
            "Crops": [
                ["Greenhouse", "Crop", "Soil pH", "Planted"],
                ["Greenhouse 3", "tomatoes", 6.5, date(2026, 2, 1)],
                ["Greenhouse 7", "basil", 5.8, date(2026, 2, 9)],
                ["Greenhouse 9", "lettuce", 6.8, date(2026, 3, 1)],
            ]
        }
    ),
    "expenses.xlsx": documents.xlsx_bytes({"Q1": [["Item", "Cost"], ["Laptops", 12000], ["Chairs", 800]]}),
    "archive-scan.pdf": documents.scanned_pdf_bytes(
        [["Observatory records, 1962."], ["The observatory dome was repainted", "with zinc white that summer."]]
    ),
    "notes.md": b"# Astronomy club\n\nThe club meets at the observatory on Fridays to look at Jupiter.\n",
}
QUESTIONS = {
    "Which foundry supplies the titanium impeller?": "suppliers.docx",
    "Why did the launch move to Lisbon?": "launch.pptx",
    "What soil pH does greenhouse 7 keep for basil?": "greenhouses.xlsx",
    "What paint was used on the observatory dome?": "archive-scan.pdf",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("formats") / "data", llm_backend="none", ocr="tesseract", _env_file=None
    )
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/collections", json={"name": "f"}).status_code == 201
        yield c


def upload(client: TestClient, name: str, data: bytes) -> dict:
    response = client.post("/v1/collections/f/documents", files={"file": (name, data)})
    assert response.status_code == 202, response.text
    return response.json()


def test_health_names_the_ocr_engine(client: TestClient) -> None:
    assert client.get("/health").json()["ocr"] == {
        "setting": "tesseract",
        "engine": "tesseract",
        "installed": ["tesseract", "rapidocr"],
    }


def test_answers_in_tables_notes_rows_and_scans_retrieve_their_file_first(client: TestClient) -> None:
    kinds = {}
    finished = {}
    for name, data in UPLOADS.items():
        done = wait_for_status(client, upload(client, name, data)["id"], timeout=300)
        assert done["status"] == "indexed", done
        kinds[name] = done["content_type"]
        finished[name] = done
    # OCR read both pages of the scan (no text layer), and nothing of the rest.
    assert (finished["archive-scan.pdf"]["ocr_pages"], finished["archive-scan.pdf"]["ocr_engine"]) == (2, "tesseract")
    assert {(d["ocr_pages"], d["ocr_engine"]) for n, d in finished.items() if n != "archive-scan.pdf"} == {(0, None)}
    assert kinds["suppliers.docx"] == "docx" and kinds["launch.pptx"] == "pptx"
    assert kinds["greenhouses.xlsx"] == "xlsx" and kinds["archive-scan.pdf"] == "pdf"
    for question, expected in QUESTIONS.items():
        response = client.post("/v1/collections/f/query", json={"query": question, "top_k": 3, "generate": False})
        assert response.status_code == 200, response.text
        first = response.json()["citations"][0]
        assert first["filename"] == expected, (question, response.json()["citations"])
        assert first["ocr"] is (expected == "archive-scan.pdf"), first
    row = client.post(
        "/v1/collections/f/query", json={"query": "basil greenhouse soil pH", "top_k": 1, "generate": False}
    ).json()["citations"][0]
    assert "Greenhouse: Greenhouse 7; Crop: basil; Soil pH: 5.8; Planted: 2026-02-09" in row["text"]
    assert row["page"] == 1
    scan = client.post(
        "/v1/collections/f/query", json={"query": "zinc white dome", "top_k": 1, "generate": False}
    ).json()["citations"][0]
    assert scan["page"] == 2 and "zinc white" in scan["text"]


def test_email_attachments_are_documents_of_their_own_linked_to_the_email(client: TestClient) -> None:
    attachment = documents.xlsx_bytes({"Rota": [["Day", "Keeper"], ["Monday", "Marguerite Okonkwo"]]})
    forwarded = documents.eml_bytes(
        "Fwd: fog horn", "Coast Guard <cg@harbour.example>", "office@harbour.example", "The fog horn sounds at 90 dB."
    )
    mail = documents.eml_bytes(
        "Lighthouse keeper rota",
        "Harbour Office <office@harbour.example>",
        "crew@harbour.example",
        "The new rota for the lighthouse keepers is attached.",
        [
            ("rota.xlsx", attachment, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            ("foghorn.eml", forwarded, "message/rfc822"),
            ("tool.exe", b"MZ\x90\x00" + bytes(60), "application/octet-stream"),
        ],
    )
    response = client.post(
        "/v1/collections/f/documents", files={"file": ("rota.eml", mail)}, data={"metadata": '{"tags": ["harbour"]}'}
    )
    assert response.status_code == 202, response.text
    done = wait_for_status(client, response.json()["id"], timeout=300)
    assert done["status"] == "indexed" and done["content_type"] == "email" and done["attached_to"] is None, done
    listed = client.get("/v1/collections/f/documents", params={"limit": 500}).json()["items"]
    children = {d["filename"]: d for d in listed if d["attached_to"] == done["id"]}
    assert sorted(children) == ["foghorn.eml", "rota.xlsx"]  # the executable is named in the e-mail, not indexed
    for child in children.values():
        child = wait_for_status(client, child["id"], timeout=300)
        assert child["status"] == "indexed" and child["metadata"] == {"tags": ["harbour"]}, child

    def first_hit(question: str) -> dict:
        body = {"query": question, "top_k": 1, "generate": False}
        return client.post("/v1/collections/f/query", json=body).json()["citations"][0]

    rota = first_hit("Which keeper works on Monday?")
    assert rota["filename"] == "rota.xlsx" and "Keeper: Marguerite Okonkwo" in rota["text"] and rota["page"] == 1
    assert first_hit("How loud is the fog horn?")["filename"] == "foghorn.eml"
    named = first_hit("lighthouse keeper rota attachment tool.exe")
    assert named["filename"] == "rota.eml" and "Attachment: tool.exe was not indexed" in named["text"]
    assert client.delete(f"/v1/documents/{done['id']}").status_code == 204
    for child in children.values():
        assert client.get(f"/v1/documents/{child['id']}").status_code == 404


def zip_bomb_docx() -> bytes:
    source = zipfile.ZipFile(io.BytesIO(documents.docx_bytes("Bomb", [("A", ["words"])])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item.filename, source.read(item.filename))
        target.writestr("word/media/zeros.bin", bytes(200 * 1024 * 1024))
    return out.getvalue()


def test_hostile_office_files_fail_alone_in_a_batch_and_nothing_is_a_5xx(client: TestClient) -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    encrypted = io.BytesIO()
    OOXMLFile(io.BytesIO(documents.docx_bytes("Secret", [("A", ["hidden"])]))).encrypt("pw", encrypted)
    good = documents.docx_bytes("Ferry timetable", [("Winter", ["The winter ferry leaves at 07:40 from pier 2."])])
    deck = documents.pptx_bytes([("A", "B", "C")])
    files = [
        ("files", ("bomb.docx", zip_bomb_docx())),
        ("files", ("locked.docx", encrypted.getvalue())),
        ("files", ("cut.pptx", deck[: len(deck) // 2])),
        ("files", ("good.docx", good)),
    ]
    response = client.post("/v1/collections/f/documents/batch", files=files)
    assert response.status_code == 202, response.text
    outcomes = {d["filename"]: wait_for_status(client, d["id"], timeout=300) for d in response.json()}
    assert outcomes["good.docx"]["status"] == "indexed"
    for name, hint in (("bomb.docx", "ZIP bomb"), ("locked.docx", "password-protected"), ("cut.pptx", "damaged")):
        assert outcomes[name]["status"] == "failed" and hint in outcomes[name]["error"], outcomes[name]
    legacy = client.post(
        "/v1/collections/f/documents", files={"file": ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2048))}
    )
    assert legacy.status_code == 415 and ".docx" in legacy.json()["detail"]
