"""Import an SAE trained elsewhere (SAELens or EleutherAI sparsify layout, from an uploaded zip or
a Hub repo) as a finished "training" of a local model, so features and steering can use it.

The files are read with the same loader as our own exports, checked against the model (width,
hook point), and written again as a SAELens folder under ``trainings/<id>/export``: from then on an
imported SAE is indistinguishable from a trained one.

An import that fails or is cancelled needs no clean-up of its own: its resource ending
(appliance.jobs.finalize, TRAINING_IMPORT) marks the row failed and removes its upload, its token and
its ``trainings/<id>`` folder in the job's terminal transaction.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from appliance.contracts.hyperparameters import K_ARCHITECTURES
from appliance.contracts.params.training import HookPoint, HookType, ImportRun
from appliance.contracts.sae_archive import unpack
from appliance.data import trainings as sql
from appliance.data.secrets import delete_secret, read_secret
from appliance.errors import UpstreamUnavailable, ValidationError
from appliance.jobs.context import JobContext
from appliance.pipeline.hub import is_network_error, probe
from appliance.pipeline.sae.io.hooks import checked_processing, peer_hook, point

# sparsify names its per-hook folders after the module ("layers.6", "h.6", "model.layers.6").
_SPARSIFY_LAYER = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)$")
# The peer's names for its hooks and model class, replaced by ours on re-export.
_PEER_HOOK_KEYS = ("hook_name_out", "hf_hook_name", "hf_hook_name_out", "model_class_name")


def _download(params: ImportRun, dest: Path, token: str | None) -> None:
    from huggingface_hub import snapshot_download

    probe("model", str(params.repo_id), token, params.revision)
    patterns = [f"{params.subfolder.strip('/')}/*"] if params.subfolder else None
    try:
        snapshot_download(
            str(params.repo_id),
            revision=params.revision,
            token=token,
            local_dir=str(dest),
            allow_patterns=patterns,
            max_workers=2,
        )
    except Exception as exc:
        if is_network_error(exc):
            raise UpstreamUnavailable(f"Lost the Hub while downloading {params.repo_id}; try again") from None
        raise


def _sae_folder(root: Path) -> Path:
    found = sorted((p.parent for p in root.rglob("cfg.json")), key=lambda p: len(p.parts))
    if not found:
        raise ValidationError(
            "No cfg.json found: expected a SAELens folder (cfg.json, sae_weights.safetensors) "
            "or a sparsify one (cfg.json, sae.safetensors)",
            details={"field": "file"},
        )
    return found[0]


def _hook(params: ImportRun, metadata: dict[str, Any], folder: Path, cfg: Any) -> HookPoint:
    """The point the SAE reads (a transcoder: the MLP input of its layer): the request's layer and
    hook_type when given, else what the files' hook names mean (io.hooks), else a sparsify folder's
    name. The SAE's model kwargs are checked against the chosen point either way."""
    transcoder = cfg.architecture == "transcoder"
    if params.layer is not None:
        kind: HookType = "mlp_in" if transcoder else (params.hook_type or "residual")
        if kind == "mlp_in" and not transcoder:
            raise ValidationError("mlp_in is read only as a transcoder's input", details={"field": "hook_type"})
        kwargs = metadata.get("model_from_pretrained_kwargs") or {}
        for checked in (kind, "mlp") if transcoder else (kind,):
            checked_processing(kwargs, checked)
        return point(params, params.layer, kind)
    if (named := peer_hook(params, metadata, transcoder)) is not None:
        return named
    if not transcoder and (match := _SPARSIFY_LAYER.search(folder.name)) is not None:
        return point(params, int(match.group(1)), "residual")
    raise ValidationError(
        f"Cannot tell which hook point of {params.model_name} the SAE reads ({folder.name!r}): "
        "give layer and hook_type",
        details={"field": "layer"},
    )


def run(ctx: JobContext, params: ImportRun) -> dict[str, Any]:
    """Fetch the SAE (upload or Hub), read and check it against the model, write it as this
    training's SAELens export and mark the training completed; the fetched files go either way."""
    settings = ctx.settings
    folder = ctx.layout.training(params.training_id)
    incoming = folder / "incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    try:
        source = _fetch(ctx, params, incoming)
        ctx.progress(0.6, "Reading the SAE", force=True)
        sae, metadata = _read(source)
        cfg = sae.cfg
        _check_width(params, cfg)
        hook = _hook(params, metadata, source, cfg)
        _export(params, sae, metadata, hook, source, folder / "export")
        ctx.db.write(
            *sql.status_change(
                params.training_id,
                "completed",
                job_id=ctx.job_id,
                layer=hook.layer,
                hook_type=hook.type,
                encoder_type=cfg.architecture,
                config=sql.encode(_imported_config(params, cfg)),
                evaluation=sql.encode({"imported": True}),
            )
        )
        return {
            "training_id": params.training_id,
            "architecture": cfg.architecture,
            "d_sae": cfg.d_sae,
            "hook_name": hook.name,
        }
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
        if params.upload:
            shutil.rmtree(Path(params.upload).parent, ignore_errors=True)
        delete_secret(settings.data_dir, params.training_id)


def _fetch(ctx: JobContext, params: ImportRun, incoming: Path) -> Path:
    """Unpack the upload or download the Hub repo into ``incoming``; the folder that holds the SAE."""
    settings = ctx.settings
    if params.upload:
        ctx.progress(0.1, "Unpacking the upload", force=True)
        unpack(Path(params.upload), incoming, params.d_model, settings.disk_reserve_mb)
    else:
        ctx.progress(0.1, f"Downloading {params.repo_id}", force=True)
        _download(params, incoming, read_secret(settings.data_dir, params.training_id))
    return _sae_folder(incoming)


def _read(source: Path) -> tuple[Any, dict[str, Any]]:
    """The SAE and its metadata, with the loader of our own exports; VALIDATION_ERROR when unreadable."""
    from appliance.pipeline.sae.io.saelens import UnsupportedSAE, load_folder

    try:
        return load_folder(source)
    except (UnsupportedSAE, KeyError, ValueError) as exc:
        raise ValidationError(f"Not a readable SAE: {exc}", details={"field": "file"}) from None


def _check_width(params: ImportRun, cfg: Any) -> None:
    """Every point the appliance hooks (and a transcoder's MLP output) is d_model wide."""
    for what, width in (("reads", cfg.d_in), ("writes", cfg.output_width)):
        if width != params.d_model:
            raise ValidationError(
                f"The SAE {what} {width}-wide activations; {params.model_name} has d_model {params.d_model}",
                details={"field": "model_id"},
            )


def _export(params: ImportRun, sae: Any, metadata: dict[str, Any], hook: HookPoint, source: Path, dest: Path) -> None:
    """The SAE written again as a SAELens folder, naming the model, our hook point(s), the kwargs under
    which TransformerLens holds those tensors, and its origin; the peer's other metadata is kept."""
    from safetensors.torch import load_file

    from appliance.pipeline.models.lens import loading_metadata
    from appliance.pipeline.sae.io.saelens import SPARSITY, export

    sparsity = load_file(str(source / SPARSITY))["sparsity"] if (source / SPARSITY).is_file() else None
    kept = {k: v for k, v in metadata.items() if k not in _PEER_HOOK_KEYS}
    names = {"hook_name": hook.name}
    if sae.cfg.architecture == "transcoder":
        names["hook_name_out"] = point(params, hook.layer, "mlp").name
    elif sae.cfg.architecture == "skip":
        names["hook_name_out"] = hook.name
    origin = params.repo_id or "upload"
    export(
        sae,
        dest,
        {
            **kept,
            "model_name": params.model_name,
            **names,
            **loading_metadata(),
            "imported_from": origin,
        },
        log_sparsity=sparsity,
    )


def _imported_config(params: ImportRun, cfg: Any) -> dict[str, Any]:
    """The training row's config for an imported SAE: where it came from and its shape."""
    return {
        "source": "imported",
        "origin": params.repo_id or "upload",
        "subfolder": params.subfolder,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "k": cfg.k if cfg.architecture in K_ARCHITECTURES else None,
        # A Matryoshka SAE's groups, where the feature browser reads them (services.features).
        "hyperparameters": {"d_sae": cfg.d_sae, "matryoshka_widths": cfg.matryoshka_widths},
    }
