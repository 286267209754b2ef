"""Labels for features written by a language model: the SAE's own model ("local") or any
OpenAI-compatible chat endpoint. The API builds one prompt per feature from its evidence (top
tokens, max-activating contexts with the strongest token marked, promoted tokens); this job asks for
a short label and stores it as the feature's ``llm_label`` (the user's name still wins)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from appliance.contracts.events import FeaturesUpdated
from appliance.contracts.labeling import SECRET, LabelingSettings
from appliance.contracts.params.features import LabelParams, ProbeParams
from appliance.data import features as sql
from appliance.data.secrets import read_secret
from appliance.errors import UpstreamUnavailable
from appliance.jobs.context import JobContext

SYSTEM = (
    "You name features of a sparse autoencoder trained on a language model. Given text contexts where "
    "a feature fires (the strongest token is marked with « »), answer with a label of at most six words "
    "for what they have in common. Answer with the label only."
)


def clean(text: str) -> str:
    """The first line, without quotes, a "Label:" prefix or a trailing full stop; at most 80 chars."""
    line = next((part.strip() for part in text.strip().splitlines() if part.strip()), "")
    if line.lower().startswith("label:"):
        line = line[6:].strip()
    return line.strip("\"'`*").rstrip(".").strip()[:80]


def _openai(settings: LabelingSettings, key: str | None, prompt: str) -> str:
    body = {
        "model": settings.model,
        "temperature": 0,
        "max_tokens": 24,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
    }
    request = urllib.request.Request(
        f"{str(settings.endpoint).rstrip('/')}/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise UpstreamUnavailable(f"The labelling endpoint answered {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise UpstreamUnavailable(f"The labelling endpoint could not be reached: {exc}") from None
    return answer["choices"][0]["message"]["content"]


def _local(ctx: JobContext, probe: ProbeParams) -> Callable[[str], str]:
    """A generator with the SAE's own model (greedy, a few tokens)."""
    import torch

    from appliance.contracts.tokenization import load_tokenizer
    from appliance.pipeline.features.probe import probe_model
    from appliance.pipeline.models.cache import exclusive
    from appliance.pipeline.models.interrupt import Interruptible

    model, _ = probe_model(ctx, probe)
    tokenizer = load_tokenizer(probe.tokenizer, ctx.layout.root)
    device = next(model.parameters()).device

    def generate(prompt: str) -> str:
        ids = tokenizer.encode(f"{prompt}\nLabel:").ids[-(probe.context_length - 12) :]
        with torch.inference_mode(), exclusive(model), Interruptible(model, ctx.check):
            out = model.generate(
                torch.tensor([ids], device=device), max_new_tokens=10, do_sample=False, pad_token_id=ids[0]
            )
        return tokenizer.decode(out[0, len(ids) :].tolist())

    return generate


def run(ctx: JobContext, params: LabelParams) -> dict[str, Any]:
    settings = params.settings
    key = read_secret(ctx.layout.root, SECRET)
    generate = None
    if settings.provider == "local":
        if params.probe is None:  # the API always names the model for this provider
            raise ValueError("the local labeller needs the SAE's model (probe)")
        generate = _local(ctx, params.probe)
    labelled: dict[int, str] = {}
    for done, (index, prompt) in enumerate(params.prompts):
        ctx.check()
        text = generate(prompt) if generate else _openai(settings, key, prompt)
        labelled[index] = clean(text) or "(no label)"
        ctx.progress((done + 1) / len(params.prompts), f"Labelled {done + 1} of {len(params.prompts)} features")
        ctx.db.write(sql.set_llm_label(params.training_id, index, labelled[index]))
    ctx.event("features.updated", FeaturesUpdated(training_id=params.training_id, status="labelled"))
    return {"training_id": params.training_id, "labelled": len(labelled), "provider": settings.provider}
