// The console's own script: the CSRF header on every request, uploads with a progress bar per file, and
// the streamed answer. Text from the server is inserted with textContent, except the answer's final HTML,
// which the server rendered and escaped itself.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  document.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["X-CSRF-Token"] = csrf();
  });

  function errorText(xhrOrBody, status) {
    try {
      const body = typeof xhrOrBody === "string" ? JSON.parse(xhrOrBody) : xhrOrBody;
      if (body && body.detail) return body.detail;
    } catch (_) { /* not JSON: fall through */ }
    return "the server answered " + status;
  }

  // --- uploads ---------------------------------------------------------------------------------
  function uploadOne(url, file, list) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "file";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + file.name);
    const state = document.createElement("span");
    state.className = "small";
    state.textContent = "uploading";
    item.append(name, bar, state);
    list.append(item);
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
      });
      xhr.addEventListener("load", () => {
        if (xhr.status === 202) {
          bar.value = 100;
          const doc = JSON.parse(xhr.responseText)[0];
          state.textContent = doc.duplicate ? "already in this collection" : "uploaded";
          item.dataset.state = "done";
        } else {
          state.textContent = "refused: " + errorText(xhr.responseText, xhr.status);
          state.classList.add("error");
          item.dataset.state = "error";
        }
        resolve();
      });
      xhr.addEventListener("error", () => {
        state.textContent = "failed: the connection was lost";
        state.classList.add("error");
        item.dataset.state = "error";
        resolve();
      });
      const form = new FormData();
      form.append("files", file, file.name);
      xhr.send(form);
    });
  }

  async function uploadAll(zone, files) {
    const list = document.getElementById("uploads");
    for (const file of files) {
      await uploadOne(zone.dataset.uploadUrl, file, list);
      const table = document.getElementById("documents");
      if (table && window.htmx) window.htmx.trigger(table, "refresh");
    }
  }

  function setUpDropzone() {
    const zone = document.getElementById("dropzone");
    if (!zone) return;
    const input = document.getElementById("files");
    input.addEventListener("change", () => {
      uploadAll(zone, Array.from(input.files));
      input.value = "";
    });
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      uploadAll(zone, Array.from(e.dataTransfer.files));
    });
  }

  // --- the streamed answer -----------------------------------------------------------------------
  function* sseEvents(buffer) {
    // Complete events in ``buffer.text`` (blank-line separated; sse-starlette ends lines with CRLF).
    const text = buffer.text.replace(/\r\n/g, "\n");
    const blocks = text.split("\n\n");
    buffer.text = blocks.pop();
    for (const block of blocks) {
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { type, data: JSON.parse(data.join("\n")) };
    }
  }

  function newTurn(question) {
    const turn = document.createElement("article");
    turn.className = "turn";
    const asked = document.createElement("p");
    asked.className = "question";
    asked.textContent = question;
    const live = document.createElement("div");
    live.className = "answer streaming";
    live.setAttribute("aria-live", "polite");
    live.setAttribute("aria-busy", "true");
    const text = document.createElement("p");
    live.append(text);
    turn.append(asked, live);
    document.getElementById("conversation").append(turn);
    return { turn, live, text };
  }

  function showError(view, message) {
    view.live.classList.remove("streaming");
    view.live.setAttribute("aria-busy", "false");
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = message;
    view.live.append(p);
  }

  function handle(event, view, form) {
    const kind = event.type;
    if (kind === "token") view.text.textContent += event.data.text || "";
    else if (kind === "reset") view.text.textContent = "";
    else if (kind === "error") showError(view, event.data.detail || "the answer failed");
    else if (kind === "answer") {
      const done = document.createElement("div");
      done.className = "turn-body";
      done.innerHTML = event.data.html;
      view.live.replaceWith(done);
      if (event.data.conversation_id) {
        document.getElementById("conversation-id").value = event.data.conversation_id;
        const url = new URL(window.location.href);
        url.searchParams.set("conversation", event.data.conversation_id);
        window.history.replaceState(null, "", url);
        form.querySelector('label[for="question"]').textContent = "Follow-up question";
      }
    }
  }

  async function ask(form) {
    const question = form.question.value.trim();
    if (!question) return;
    const button = document.getElementById("ask-button");
    button.disabled = true;
    const view = newTurn(question);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf(), Accept: "text/event-stream" },
        body: new FormData(form),
        credentials: "same-origin",
      });
      if (!response.ok || !response.body) {
        showError(view, "Refused: " + errorText(await response.text(), response.status));
        return;
      }
      form.question.value = "";
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const buffer = { text: "" };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer.text += decoder.decode(value, { stream: true });
        for (const event of sseEvents(buffer)) handle(event, view, form);
      }
    } catch (err) {
      showError(view, "The connection was lost: " + err.message);
    } finally {
      button.disabled = false;
      form.question.focus();
    }
  }

  function setUpAsk() {
    const form = document.getElementById("ask-form");
    if (!form) return;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      ask(form);
    });
    form.question.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    // A citation link moves the keyboard focus to its source card, not just the scroll position.
    document.getElementById("conversation").addEventListener("click", (e) => {
      const link = e.target.closest("a.cite");
      if (!link) return;
      const card = document.getElementById(link.hash.slice(1));
      if (card) {
        document.querySelectorAll(".source.current").forEach((c) => c.classList.remove("current"));
        card.classList.add("current");
        card.focus();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpDropzone();
    setUpAsk();
  });
})();
