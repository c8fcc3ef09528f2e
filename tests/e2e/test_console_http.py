"""The web console over HTTP: session cookie flags, CSRF, the Content-Security-Policy, roles as the API has
them, and the key never leaving the server. The browser itself is driven in test_console_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.e2e.helpers import wait_for_status

ROOT_KEY = "console-root-key"
ROOT = {"Authorization": f"Bearer {ROOT_KEY}"}


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("console-http") / "data"
    return Settings(data_dir=data, llm_backend="none", api_key=ROOT_KEY, answer_mode="extractive", _env_file=None)


@pytest.fixture(scope="module")
def served(app_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings)) as client:
        assert client.post("/v1/collections", json={"name": "docs"}, headers=ROOT).status_code == 201
        yield client


@pytest.fixture(scope="module")
def reader_key(served: TestClient) -> str:
    response = served.post("/v1/admin/keys", json={"name": "reader", "role": "reader"}, headers=ROOT)
    assert response.status_code == 201, response.text
    return response.json()["key"]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(app: TestClient, key: str, base_url: str = "http://testserver") -> TestClient:
    """A fresh browser-like client (its own cookie jar) signed in with ``key``."""
    client = TestClient(app.app, base_url=base_url)
    form = client.get("/ui/login")
    assert form.status_code == 200
    response = client.post("/ui/login", data={"api_key": key, "csrf_token": csrf_of(form.text)}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/collections"
    return client


def test_root_redirects_to_the_console(served: TestClient) -> None:
    response = served.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"


def test_session_cookie_is_httponly_strict_and_secure_only_over_tls(served: TestClient) -> None:
    plain = sign_in(served, ROOT_KEY)
    cookie = plain.cookies.jar
    [session] = [c for c in cookie if c.name == "rag_console"]
    assert session.has_nonstandard_attr("HttpOnly")
    assert session.get_nonstandard_attr("SameSite").lower() == "strict"
    assert not session.secure
    assert session.path == "/ui"

    tls = TestClient(served.app, base_url="https://testserver")
    header = tls.get("/ui/login").headers["set-cookie"]
    assert "Secure" in header and "HttpOnly" in header and "SameSite=strict" in header


def test_sign_in_replaces_the_session_and_sign_out_ends_it(served: TestClient) -> None:
    client = TestClient(served.app)
    form = client.get("/ui/login")
    before = client.cookies["rag_console"]
    client.post("/ui/login", data={"api_key": ROOT_KEY, "csrf_token": csrf_of(form.text)}, follow_redirects=False)
    after = client.cookies["rag_console"]
    assert after != before, "the id set before sign-in must not become the signed-in session"
    page = client.get("/ui/collections")
    assert page.status_code == 200
    out = client.post("/ui/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set("rag_console", after, path="/ui")  # replaying the old id does not help
    assert client.get("/ui/collections", follow_redirects=False).headers["location"] == "/ui/login"


def test_a_wrong_key_is_refused_at_sign_in(served: TestClient) -> None:
    client = TestClient(served.app)
    form = client.get("/ui/login")
    response = client.post("/ui/login", data={"api_key": "rag_not-a-key", "csrf_token": csrf_of(form.text)})
    assert response.status_code == 401
    assert "not valid" in response.text
    assert client.get("/ui/collections", follow_redirects=False).status_code == 303


def test_every_post_needs_the_session_csrf_token(served: TestClient) -> None:
    client = sign_in(served, ROOT_KEY)
    token = csrf_of(client.get("/ui/collections").text)
    assert client.post("/ui/collections", data={"name": "nocsrf"}).status_code == 403
    assert client.post("/ui/collections", data={"name": "nocsrf", "csrf_token": "forged"}).status_code == 403
    refused = client.post("/ui/collections", data={"name": "nocsrf"}, headers={"X-CSRF-Token": "forged"})
    assert refused.status_code == 403
    assert "security token" in refused.text
    upload = client.post("/ui/collections/docs/upload", files={"files": ("a.txt", b"some text", "text/plain")})
    assert upload.status_code == 403
    other = sign_in(served, ROOT_KEY)  # another session's token is not this session's
    assert other.post("/ui/collections", data={"name": "nocsrf", "csrf_token": token}).status_code == 403
    assert served.get("/v1/collections", headers=ROOT).json()[0]["name"] == "docs"
    made = client.post("/ui/collections", data={"name": "withcsrf", "csrf_token": token}, follow_redirects=False)
    assert made.status_code == 303


def test_pages_carry_a_csp_without_inline_scripts(served: TestClient) -> None:
    client = sign_in(served, ROOT_KEY)
    for path in (
        "/ui/login",
        "/ui/collections",
        "/ui/collections/docs",
        "/ui/collections/docs/ask",
        "/ui/admin/keys",
        "/ui/admin/reindex",
        "/ui/admin/queries",
        "/ui/admin/evaluations",
        "/ui/no-such-page",
        "/ui/static/console.js",
    ):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert "frame-ancestors 'none'" in csp
        html = response.text
        if path.endswith(".js"):
            continue
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script on {path}"
        assert not re.search(r"\son[a-z]+\s*=", html), f"inline event handler on {path}"
        assert not re.search(r"\sstyle\s*=", html), f"inline style on {path}"
    assert "content-security-policy" not in served.get("/health").headers  # the API is left as it was


def test_the_key_never_appears_in_a_url_or_a_page(served: TestClient, reader_key: str) -> None:
    client = TestClient(served.app)
    form = client.get("/ui/login")
    signed = client.post("/ui/login", data={"api_key": reader_key, "csrf_token": csrf_of(form.text)})
    assert signed.status_code == 200
    for response in [*signed.history, signed]:
        assert reader_key not in str(response.url)
        assert reader_key not in response.headers.get("location", "")
        assert reader_key not in response.text
        assert reader_key not in response.headers.get("set-cookie", "")
    for path in ("/ui/collections", "/ui/collections/docs", "/ui/collections/docs/ask"):
        assert reader_key not in client.get(path).text
    assert 'type="password"' in form.text and 'method="post"' in form.text


def test_a_reader_sees_no_upload_and_is_refused_as_the_api_refuses(served: TestClient, reader_key: str) -> None:
    client = sign_in(served, reader_key)
    page = client.get("/ui/collections/docs")
    assert page.status_code == 200
    assert 'id="dropzone"' not in page.text and 'type="file"' not in page.text
    assert "New collection" not in client.get("/ui/collections").text
    token = csrf_of(page.text)
    forced = client.post(
        "/ui/collections/docs/upload",
        files={"files": ("a.txt", b"a reader's text", "text/plain")},
        headers={"X-CSRF-Token": token},
    )
    assert forced.status_code == 403
    api = served.post(
        "/v1/collections/docs/documents/batch",
        files={"files": ("a.txt", b"a reader's text", "text/plain")},
        headers={"Authorization": f"Bearer {reader_key}"},
    )
    assert api.status_code == 403
    assert client.post("/ui/collections", data={"name": "mine", "csrf_token": token}).status_code == 403
    assert client.get("/ui/admin/keys").status_code == 403
    assert client.get("/ui/admin/queries").status_code == 403


def test_a_revoked_key_ends_its_console_sessions(served: TestClient) -> None:
    created = served.post("/v1/admin/keys", json={"name": "short-lived", "role": "writer"}, headers=ROOT).json()
    client = sign_in(served, created["key"])
    assert client.get("/ui/collections").status_code == 200
    assert served.delete(f"/v1/admin/keys/{created['id']}", headers=ROOT).status_code == 200
    response = client.get("/ui/collections", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    fragment = client.get("/ui/collections/docs/documents", headers={"HX-Request": "true"})
    assert fragment.headers.get("hx-redirect") == "/ui/login"


def test_failed_upload_shows_its_message_then_retry_and_download(served: TestClient, app_settings: Settings) -> None:
    client = sign_in(served, ROOT_KEY)
    token = csrf_of(client.get("/ui/collections/docs").text)
    broken = b"%PDF-1.7\n" + b"this is not a PDF body at all " * 20
    upload = client.post(
        "/ui/collections/docs/upload",
        files={"files": ("broken.pdf", broken, "application/pdf")},
        headers={"X-CSRF-Token": token},
    )
    assert upload.status_code == 202, upload.text
    document_id = upload.json()[0]["id"]
    failed = wait_for_status(served, document_id, headers=ROOT)
    assert failed["status"] == "failed" and failed["error"]
    table = client.get("/ui/collections/docs/documents", headers={"HX-Request": "true"}).text
    assert "status-failed" in table and "Retry" in table
    assert failed["error"].split("'")[0][:30] in table.replace("&#39;", "'")
    assert "every 2s" not in table, "nothing is pending, so the table stops polling"

    retried = client.post(f"/ui/documents/{document_id}/retry", headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert retried.status_code == 200
    assert served.get(f"/v1/documents/{document_id}", headers=ROOT).json()["status"] in (
        "queued",
        "processing",
        "failed",
    )
    assert wait_for_status(served, document_id, headers=ROOT)["status"] == "failed"

    original = client.get(f"/ui/documents/{document_id}/original")
    assert original.status_code == 200
    assert original.content == broken
    assert original.headers["content-type"] == "application/octet-stream"
    assert 'filename="broken.pdf"' in original.headers["content-disposition"]

    deleted = client.post(f"/ui/documents/{document_id}/delete", headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert deleted.status_code == 200 and "broken.pdf" not in deleted.text
    assert served.get(f"/v1/documents/{document_id}", headers=ROOT).status_code == 404


def test_retry_of_a_document_that_did_not_fail_is_a_conflict(served: TestClient) -> None:
    upload = served.post(
        "/v1/collections/docs/documents",
        files={"file": ("ok.txt", b"Plain words about tides.", "text/plain")},
        headers=ROOT,
    )
    document_id = upload.json()["id"]
    assert wait_for_status(served, document_id, headers=ROOT)["status"] == "indexed"
    response = served.post(f"/v1/documents/{document_id}/retry", headers=ROOT)
    assert response.status_code == 409
    assert "only a failed document" in response.json()["detail"]


def test_evaluation_page_names_the_reports_folder(served: TestClient, app_settings: Settings) -> None:
    client = sign_in(served, ROOT_KEY)
    page = client.get("/ui/admin/evaluations")
    assert page.status_code == 200
    assert str(app_settings.eval_reports_path) in page.text
    assert client.get("/ui/admin/evaluations?report=../secrets.json").status_code == 404
    Path(app_settings.eval_reports_path).mkdir(parents=True, exist_ok=True)
    (app_settings.eval_reports_path / "broken.json").write_text("{not json")
    assert client.get("/ui/admin/evaluations?report=broken.json").status_code == 422
    (app_settings.eval_reports_path / "broken.json").unlink()


def test_bad_form_input_is_a_4xx_page(served: TestClient) -> None:
    client = sign_in(served, ROOT_KEY)
    token = csrf_of(client.get("/ui/collections").text)
    bad = client.post("/ui/collections", data={"name": "Not A Name", "csrf_token": token})
    assert bad.status_code == 422 and "name:" in bad.text
    bad = client.get("/ui/admin/queries?since=yesterday")
    assert bad.status_code == 422 and "since" in bad.text
    bad = client.get("/ui/admin/queries?min_latency_ms=-3")
    assert bad.status_code == 422
    empty = client.post("/ui/collections/docs/ask", data={"question": "   "}, headers={"X-CSRF-Token": token})
    assert empty.status_code == 422
    key = client.post("/ui/admin/keys", data={"name": "x", "role": "overlord", "csrf_token": token})
    assert key.status_code == 422
