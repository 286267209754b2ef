"""A fake OpenAI-compatible endpoint on loopback that explains features and judges explanations by a rule of
its own, which the appliance's scorer never sees:

- **explainer**: the most common token marked «like this» in the excerpts is X; it answers
  '[EXPLANATION]: the token "X"' (X as a JSON string). ``swap`` maps X to another token first: a wrong
  explanation on purpose.
- **detection judge**: an example is 1 iff its text contains X as a token of its own (not inside a word).
- **fuzzing judge**: an example is 1 iff at least half of its marked tokens are X.

``faults`` make it misbehave for features whose X is a key: "malformed" (the judge answers prose), "sleep"
(the explainer answers after ``sleep_s``), "401" (the explainer refuses the key, quoting it back as OpenAI
does; ``refuse``: for every feature). ``hold_at`` holds the n-th distinct explain request and every one
after it until ``release`` is set (``holding`` is set meanwhile): a test can cancel a run half-way. Threaded,
so a held request never blocks the others.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MARKED = re.compile("«(.*?)»")
EXPLANATION = re.compile(r'^Feature explanation: the token (".*")$', re.MULTILINE)
EXAMPLE = re.compile(r"^Example (\d+): (.*)$", re.MULTILINE)


def explanation_of(token: str) -> str:
    return f"the token {json.dumps(token)}"


def contains(text: str, token: str) -> bool:
    """``token`` in ``text``; a word (" the") not as part of a longer one ("there")."""
    word = token.strip().isalnum()
    before = r"(?<![A-Za-z0-9])" if word and token[:1].isalnum() else ""
    after = r"(?![A-Za-z0-9])" if word else ""
    return re.search(before + re.escape(token) + after, text) is not None


class FakeJudge:
    def __init__(self) -> None:
        self.explain_prompts: Counter[str] = Counter()  # each explain request's excerpts, as sent
        self.requests = 0
        self.keys: list[str | None] = []
        self.swap: dict[str, str] = {}
        self.faults: dict[str, str] = {}
        self.refuse = False  # every request answered 401, as "401" does for one feature
        self.sleep_s = 0.0
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
                status, reply = fake.answer(self.path, dict(self.headers), body)
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def shutdown(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- answers ------------------------------------------------------------------------------------------
    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        with self._lock:
            self.requests += 1
            self.keys.append(headers.get("Authorization"))
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": "no such route"}}
        if "[EXPLANATION]" in system:
            return self._explain(headers, user)
        return self._judge("marked" in system, user)

    def _explain(self, headers: dict[str, str], user: str) -> tuple[int, Any]:
        marked = Counter(MARKED.findall(user))
        token = marked.most_common(1)[0][0] if marked else ""
        with self._lock:
            self.explain_prompts[user] += 1
            nth = len(self.explain_prompts)
        if self.hold_at is not None and nth >= self.hold_at:
            self.holding.set()
            self.release.wait(60)
        fault = "401" if self.refuse else self.faults.get(token)
        if fault == "401":
            quoted = headers.get("Authorization", "")
            return 401, {"error": {"message": f"Incorrect API key provided: {quoted}", "code": "invalid_api_key"}}
        if fault == "sleep":
            time.sleep(self.sleep_s)
        said = self.swap.get(token, token)
        return 200, _completion(f"Looking at the marked tokens.\n[EXPLANATION]: {explanation_of(said)}")

    def _judge(self, fuzzing: bool, user: str) -> tuple[int, Any]:
        found = EXPLANATION.search(user)
        token = json.loads(found.group(1)) if found else None
        if token is not None and self.faults.get(token) == "malformed":
            return 200, _completion("These examples are hard to tell apart; I would rather not say.")
        answers = []
        for _, text in EXAMPLE.findall(user):
            if token is None:
                answers.append(0)
            elif fuzzing:
                marks = MARKED.findall(text)
                answers.append(int(bool(marks) and 2 * sum(m == token for m in marks) >= len(marks)))
            else:
                answers.append(int(contains(MARKED.sub(r"\1", text), token)))
        return 200, _completion(json.dumps(answers))


def _completion(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
