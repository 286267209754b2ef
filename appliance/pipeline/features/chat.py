"""The language model behind explanations and their judges, as one function: a ``Chat`` takes chat messages
(``[{"role": "system" | "user" | "assistant", "content": ...}]``) and a reply length, and answers the reply's
text. Two providers implement it: any OpenAI-compatible endpoint (``openai_chat``: llama.cpp, vLLM, Ollama on
the LAN, or a cloud service) and a model the appliance holds (``appliance.pipeline.features.local_chat``).

A call that fails raises ``ChatError``, whose ``state`` becomes the feature's state (timeout, unauthorized,
unreachable, upstream_error, malformed) and whose ``message`` is safe to store and show: the API key is
replaced by "[redacted]" wherever the endpoint quotes it back (the worker's scrubber catches it again where
text leaves the worker).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Literal

from appliance.contracts.labeling import LabelingSettings
from appliance.data.redact import REDACTED

ChatState = Literal["timeout", "unauthorized", "unreachable", "upstream_error", "malformed"]
Chat = Callable[[list[dict[str, str]], int], str]
# How much of an endpoint's error body a message quotes: enough to say why, not a page of HTML.
QUOTED = 200
MAX_REPLY_BYTES = 4 * 1024 * 1024  # a chat completion is a few kB; a larger answer is not one


class ChatError(Exception):
    """One call failed: ``state`` is the feature's state, ``message`` safe text saying why."""

    def __init__(self, state: ChatState, message: str):
        super().__init__(message)
        self.state: ChatState = state
        self.message = message


def openai_chat(settings: LabelingSettings, key: str | None) -> Chat:
    """A ``Chat`` answered by ``settings.endpoint``'s ``/chat/completions`` (greedy: temperature 0), each call
    bounded by ``settings.timeout_s``."""
    if not settings.endpoint or not settings.model:
        raise ChatError("unreachable", "No endpoint and model are set: PUT /api/settings/labeling")
    url = f"{settings.endpoint.rstrip('/')}/chat/completions"
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    model, timeout = settings.model, settings.timeout_s

    def safe(text: str) -> str:
        return text.replace(key, REDACTED) if key else text

    def chat(messages: list[dict[str, str]], max_tokens: int) -> str:
        body = {"model": model, "temperature": 0, "max_tokens": max_tokens, "messages": messages}
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read(MAX_REPLY_BYTES)
        except urllib.error.HTTPError as exc:
            quoted = safe(exc.read()[:QUOTED].decode(errors="replace"))
            state: ChatState = "unauthorized" if exc.code in (401, 403) else "upstream_error"
            raise ChatError(state, f"The endpoint answered {exc.code}: {quoted}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise ChatError("timeout", f"The endpoint did not answer within {timeout:g} s") from None
            raise ChatError("unreachable", safe(f"The endpoint could not be reached: {exc.reason}")) from None
        except (TimeoutError, socket.timeout):
            raise ChatError("timeout", f"The endpoint did not answer within {timeout:g} s") from None
        except OSError as exc:  # a connection reset half-way through the answer
            raise ChatError("unreachable", safe(f"The endpoint's connection failed: {exc}")) from None
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            quoted = safe(raw[:QUOTED].decode(errors="replace"))
            raise ChatError("upstream_error", f"The endpoint's answer is not a chat completion: {quoted}") from None
        if not isinstance(content, str):
            raise ChatError("upstream_error", "The endpoint's answer has no text")
        return content

    return chat
