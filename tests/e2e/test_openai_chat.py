"""The OpenAI-compatible endpoint driven by the official ``openai`` package against a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.config import Settings
from tests.e2e.live_app import ROOT_KEY, LiveApp, live_app

QUESTION = "Which language model answers by default?"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    yield from live_app(tmp_path_factory.mktemp("openai") / "data")


def client(app: LiveApp, key: str = ROOT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0, timeout=120)


def ask(question: str = QUESTION) -> list[Any]:
    return [{"role": "user", "content": question}]


def check_annotations(app: LiveApp, content: str, annotations: list[dict[str, Any]]) -> None:
    """Every annotation points at a marker of the content and quotes its chunk exactly."""
    assert annotations
    for annotation in annotations:
        assert annotation["type"] == "file_citation"
        assert content[annotation["start_index"] : annotation["end_index"]] == annotation["text"]
        cited = annotation["file_citation"]
        assert f"[{cited['number']}]" in annotation["text"]
        assert cited["filename"].endswith(".txt") and cited["file_id"] in app.documents.values()
        assert cited["quote"] and app.chunk_text(cited["chunk_id"])[cited["start"] : cited["end"]] == cited["quote"]


def test_models_are_the_collections_the_key_may_read(app: LiveApp) -> None:
    assert {m.id for m in client(app).models.list()} == {"docs", "other"}
    assert [m.id for m in client(app, app.reader_key).models.list()] == ["docs"]
    assert client(app).models.retrieve("other").owned_by == "hybrid-rag"


def test_create_gives_a_cited_answer_with_usage_and_a_query_log(app: LiveApp) -> None:
    raw = client(app).chat.completions.with_raw_response.create(model="docs", messages=ask())
    completion = raw.parse()  # the openai package accepts the annotations and the extra "rag" field
    body = raw.http_response.json()
    message = completion.choices[0].message
    assert message.role == "assistant" and "[1]" in (message.content or "")
    assert completion.choices[0].finish_reason == "stop" and completion.model == "docs"
    cited = body["choices"][0]["message"]["annotations"]
    check_annotations(app, message.content or "", cited)
    assert any(a["file_citation"]["filename"] == "llm-backends.txt" for a in cited)
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    query_id = body["rag"]["query_id"]
    assert completion.id == f"chatcmpl-{query_id}" and body["rag"]["abstained"] is False
    with app.client() as native:
        log = native.get(f"/v1/queries/{query_id}").json()
    assert log["query"] == QUESTION and log["collection"] == "docs" and log["answer"] == message.content


def test_stream_delivers_the_same_answer_in_chunks(app: LiveApp) -> None:
    whole = client(app).chat.completions.create(model="docs", messages=ask())
    stream = client(app).chat.completions.create(
        model="docs", messages=ask(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # one piece per sentence
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finished] == ["stop"]
    cited = [a for c in chunks if c.choices for a in (c.choices[0].delta.model_dump().get("annotations") or [])]
    check_annotations(app, content, cited)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_the_sse_stream_ends_with_done(app: LiveApp) -> None:
    body = {"model": "docs", "messages": ask(), "stream": True}
    with app.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and len(lines) >= 4


def test_follow_ups_are_rewritten_with_the_history(app: LiveApp) -> None:
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": "SmolLM2-135M-Instruct on llama.cpp answers by default. [1]"},
        {"role": "user", "content": "How big is it?"},
    ]
    raw = client(app).chat.completions.with_raw_response.create(model="docs", messages=messages)
    query_id = raw.http_response.json()["rag"]["query_id"]
    with app.client() as native:
        log = native.get(f"/v1/queries/{query_id}").json()
    rewritten = next(e for e in log["events"] if e["type"] == "query_rewritten")
    assert rewritten["query"].startswith(QUESTION) and log["query"] == rewritten["query"]


def test_stop_and_max_tokens_are_honoured(app: LiveApp) -> None:
    whole = client(app).chat.completions.create(model="docs", messages=ask()).choices[0].message.content or ""
    stopped = client(app).chat.completions.create(model="docs", messages=ask(), stop=["."])
    assert stopped.choices[0].message.content == whole.split(".")[0]
    assert stopped.choices[0].finish_reason == "stop"
    short = client(app).chat.completions.create(model="docs", messages=ask(), max_tokens=4)
    assert short.choices[0].finish_reason == "length" and short.usage is not None
    assert 0 < short.usage.completion_tokens <= 4
    assert whole.startswith(short.choices[0].message.content or "")
    stream = client(app).chat.completions.create(model="docs", messages=ask(), max_tokens=4, stream=True)
    pieces = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in pieces) == short.choices[0].message.content
    assert pieces[-1].choices[0].finish_reason == "length"


def test_platform_options_pass_through_extra_body(app: LiveApp) -> None:
    raw = client(app).chat.completions.with_raw_response.create(
        model="docs", messages=ask(), extra_body={"rag": {"top_k": 2, "mode": "keyword", "answer_mode": "extractive"}}
    )
    query_id = raw.http_response.json()["rag"]["query_id"]
    with app.client() as native:
        log = native.get(f"/v1/queries/{query_id}").json()
    assert log["mode"] == "keyword" and log["top_k"] == 2


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_errors_take_the_openai_shape_and_status(app: LiveApp) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client(app).chat.completions.create(model="nope", messages=ask())
    assert error_of(missing.value)["code"] == "model_not_found"
    with pytest.raises(openai.AuthenticationError) as bad_key:
        client(app, "rag_not-a-key").chat.completions.create(model="docs", messages=ask())
    assert error_of(bad_key.value)["code"] == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError) as scoped:
        client(app, app.reader_key).chat.completions.create(model="other", messages=ask())
    assert error_of(scoped.value)["type"] == "permission_error"
    with pytest.raises(openai.BadRequestError) as unknown:
        client(app).chat.completions.create(model="docs", messages=ask(), seed=7)
    assert error_of(unknown.value) | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": "seed",
        "code": "unknown_parameter",
    }
    with pytest.raises(openai.BadRequestError) as several:
        client(app).chat.completions.create(model="docs", messages=ask(), n=2)
    assert error_of(several.value)["param"] == "n"
    with pytest.raises(openai.BadRequestError) as last_not_user:
        client(app).chat.completions.create(model="docs", messages=[{"role": "assistant", "content": "Hi"}])
    assert error_of(last_not_user.value)["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        client(app).chat.completions.create(model="docs", messages=ask(), temperature=3)
    with pytest.raises(openai.BadRequestError) as nul:  # no text column of PostgreSQL can hold it: never a 500
        client(app).chat.completions.create(model="do\x00cs", messages=ask())
    assert error_of(nul.value)["param"] == "model"


def test_the_native_api_keeps_its_own_error_shape(app: LiveApp) -> None:
    with httpx.Client(base_url=app.url, timeout=30) as http:
        assert set(http.post("/v1/collections/docs/query", json={"query": "x"}).json()) == {"detail"}
        assert set(http.post("/v1/chat/completions", json={}).json()) == {"error"}


def test_the_reader_key_answers_but_cannot_upload(app: LiveApp) -> None:
    assert client(app, app.reader_key).chat.completions.create(model="docs", messages=ask()).choices[0].message.content
    with app.client(app.reader_key) as http:
        upload = http.post("/v1/collections/docs/documents", files={"file": ("x.txt", b"text")})
    assert upload.status_code == 403


def test_rate_limits_are_shared_with_the_native_query(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(
        data_dir=tmp_path / "data", llm_backend="none", api_key=ROOT_KEY, rate_limit_query="2/minute", _env_file=None
    )
    headers = {"Authorization": f"Bearer {ROOT_KEY}"}
    with TestClient(create_app(settings)) as http:
        http.post("/v1/collections", json={"name": "docs"}, headers=headers)
        for _ in range(2):
            assert http.post("/v1/collections/docs/query", json={"query": "x"}, headers=headers).status_code == 200
        chat = openai.OpenAI(base_url="http://testserver/v1", api_key=ROOT_KEY, http_client=http, max_retries=0)
        with pytest.raises(openai.RateLimitError) as limited:
            chat.chat.completions.create(model="docs", messages=ask())
    assert error_of(limited.value)["code"] == "rate_limit_exceeded"
    assert int(limited.value.response.headers["Retry-After"]) >= 1
