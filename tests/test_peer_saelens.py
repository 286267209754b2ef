"""Fidelity with SAELens itself (sae-lens, a dev dependency): every architecture we train, exported,
loads in SAELens with the right class and no warning but its advice on model kwargs, and SAELens's
own encode/decode/forward reproduce ours on the demo model's activations (stored by an extraction and
freshly hooked); every SAELens configuration, built and saved with SAELens's own classes and
imported through the API, either gives SAELens's latents and reconstructions or is refused with a
VALIDATION_ERROR naming the setting."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from appliance.pipeline.models.lens import TRANSFORMER_LENS_KWARGS, loading_metadata
from appliance.pipeline.sae import SAEConfig, build
from appliance.pipeline.sae.io.saelens import SAE_LENS_VERSION, export, load_folder
from tests.peer_kit import (
    LAYER,
    assert_close,
    explained_variance,
    hooked_activations,
    import_upload,
    l0,
    randomise,
    stored_activations,
)
from tests.support import Appliance, started_demo

torch.set_num_threads(1)

D = 128  # the demo model's d_model
D_SAE = 512
RESID = f"blocks.{LAYER}.hook_resid_post"
MLP_IN = f"blocks.{LAYER}.ln2.hook_normalized"
MLP_OUT = f"blocks.{LAYER}.hook_mlp_out"
BATCH_TOPK = ("batchtopk", "matryoshka_batchtopk")
# The one warning SAELens gives on loading an SAE that names its model kwargs: advice to pass them.
KWARGS_ADVICE = "non-empty model_from_pretrained_kwargs"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "peer_saelens")


@pytest.fixture(scope="module")
def stored(app: Appliance) -> dict[str, torch.Tensor]:
    return stored_activations(app)


@pytest.fixture(scope="module")
def hooked() -> dict[str, torch.Tensor]:
    return hooked_activations()


def _saelens_load(folder: Path) -> Any:
    from sae_lens import SAE

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = SAE.load_from_disk(folder)
    assert [str(w.message) for w in caught if KWARGS_ADVICE not in str(w.message)] == []
    return loaded


def test_export_writes_a_released_sae_lens_version() -> None:
    import sae_lens

    assert SAE_LENS_VERSION.split(".")[:2] == sae_lens.__version__.split(".")[:2]


# -- (a) our exports in SAELens ------------------------------------------------------------------
EXPORTED_AS = {
    "sparse": "StandardSAE",
    "topk": "TopKSAE",
    "jumprelu": "JumpReLUSAE",
    "skip": "SkipTranscoder",
    "transcoder": "Transcoder",
    "gated": "GatedSAE",
    # SAELens saves its batch TopK SAEs for inference as JumpReLUs (process_state_dict_for_saving_inference).
    "batchtopk": "JumpReLUSAE",
    "matryoshka_batchtopk": "JumpReLUSAE",
}


def _off_data_threshold(pre: torch.Tensor) -> float:
    """A batch TopK threshold that passes about a tenth of the positive pre-activations, in the middle of
    the widest gap between the data's values there, where rounding cannot decide which side one falls."""
    values = pre[pre > 0].flatten().sort().values
    lo, hi = int(0.85 * len(values)), int(0.95 * len(values))
    i = lo + int((values[lo + 1 : hi + 1] - values[lo:hi]).argmax())
    return float((values[i] + values[i + 1]) / 2)


@pytest.mark.parametrize("source", ["stored", "hooked"])
@pytest.mark.parametrize("arch", list(EXPORTED_AS))
def test_every_architecture_loads_in_saelens_and_computes_the_same(
    arch: str, source: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    acts: dict[str, torch.Tensor] = request.getfixturevalue(source)
    transcoder = arch == "transcoder"
    x, y = (acts["mlp_in"], acts["mlp"]) if transcoder else (acts["residual"], acts["residual"])
    sae = build(SAEConfig(arch, D, D_SAE, d_out=D if transcoder else None, k=24))
    randomise(dict(sae.named_parameters()), x, centre=sae.cfg.apply_b_dec_to_input)
    if arch in BATCH_TOPK:
        with torch.no_grad():
            sae.topk_threshold.fill_(_off_data_threshold(sae.pre_activations(x)))
    metadata = {
        "model_name": "mistudio/demo",
        "hook_name": MLP_IN if transcoder else RESID,
        **({"hook_name_out": MLP_OUT} if transcoder else {}),
        "context_size": 64,
        "dataset_path": "mistudio/demo-docstrings",
        "prepend_bos": True,
        "exclude_special_tokens": True,
        **loading_metadata(),
    }
    folder = export(sae, tmp_path / arch, metadata, log_sparsity=torch.full((D_SAE,), -2.0))

    theirs = _saelens_load(folder)
    assert type(theirs).__name__ == EXPORTED_AS[arch]
    saved = json.loads((folder / "cfg.json").read_text())["metadata"]
    assert {k: saved[k] for k in metadata} == metadata  # the training's metadata, passed through unchanged
    assert saved["mistudio_architecture"] == arch and saved["sae_lens_version"] == SAE_LENS_VERSION
    if arch == "skip":
        assert saved["hook_name_out"] == RESID
    with torch.no_grad():
        z, x_hat = sae.encode(x), sae.reconstruct(x)
        z_theirs = theirs.encode(x)
        assert_close(z, z_theirs)
        # SAELens's decode has no skip term (its forward adds it); ours likewise.
        assert_close(sae.decode(z), theirs.decode(z_theirs))
        x_hat_theirs = theirs(x)
        assert_close(x_hat, x_hat_theirs)
        assert explained_variance(x_hat, y) == pytest.approx(explained_variance(x_hat_theirs, y), abs=1e-5)
        assert l0(z) == pytest.approx(l0(z_theirs), abs=1e-5)
        assert 1 < l0(z) < D_SAE / 2  # latents fire, sparsely
        again, _ = load_folder(folder)  # and our own loader gives the same SAE back
        assert again.cfg.architecture == arch
        if arch in BATCH_TOPK:  # k and the Matryoshka groups come back from SAELens' training metadata
            assert (again.cfg.k, again.cfg.matryoshka_widths) == (sae.cfg.k, sae.cfg.matryoshka_widths)
        assert_close(again.encode(x), z)
        assert_close(again.reconstruct(x), x_hat)


# -- (c) SAELens's configurations imported ---------------------------------------------------------
def _saelens(kind: str, training: bool = False, **settings: Any) -> Callable[[], Any]:
    """A builder of a SAELens SAE of ``kind`` (standard, topk, jumprelu, gated, transcoder, skip_transcoder),
    its training class when ``training``; ``settings``: config fields, and metadata under ``metadata``."""

    def make() -> Any:
        from sae_lens.saes.gated_sae import GatedSAE, GatedSAEConfig, GatedTrainingSAE, GatedTrainingSAEConfig
        from sae_lens.saes.jumprelu_sae import (
            JumpReLUSAE,
            JumpReLUSAEConfig,
            JumpReLUTrainingSAE,
            JumpReLUTrainingSAEConfig,
        )
        from sae_lens.saes.sae import SAEMetadata
        from sae_lens.saes.standard_sae import (
            StandardSAE,
            StandardSAEConfig,
            StandardTrainingSAE,
            StandardTrainingSAEConfig,
        )
        from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.saes.transcoder import SkipTranscoder, SkipTranscoderConfig, Transcoder, TranscoderConfig

        classes = {
            ("standard", False): (StandardSAE, StandardSAEConfig),
            ("standard", True): (StandardTrainingSAE, StandardTrainingSAEConfig),
            ("topk", False): (TopKSAE, TopKSAEConfig),
            ("topk", True): (TopKTrainingSAE, TopKTrainingSAEConfig),
            ("jumprelu", False): (JumpReLUSAE, JumpReLUSAEConfig),
            ("jumprelu", True): (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig),
            ("transcoder", False): (Transcoder, TranscoderConfig),
            ("skip_transcoder", False): (SkipTranscoder, SkipTranscoderConfig),
            ("gated", False): (GatedSAE, GatedSAEConfig),
            ("gated", True): (GatedTrainingSAE, GatedTrainingSAEConfig),
        }
        sae_class, config_class = classes[kind, training]
        transcoding = kind.endswith("transcoder")
        fields = dict(settings)
        metadata = {"model_name": "demo", "hook_name": MLP_IN if transcoding else RESID, **fields.pop("metadata", {})}
        if transcoding:
            metadata.setdefault("hook_name_out", MLP_OUT)
            fields.update(d_out=D, apply_b_dec_to_input=False)
        if kind == "topk":
            fields.setdefault("k", 24)
        return sae_class(config_class(d_in=D, d_sae=D_SAE, metadata=SAEMetadata(**metadata), **fields))

    return make


# (builder, how it is saved, expected: (encoder_type, hook_type) or the setting its refusal names)
SAELENS_CASES: dict[str, tuple[Callable[[], Any], str, tuple[str, str] | str]] = {
    "standard": (_saelens("standard"), "save_model", ("sparse", "residual")),
    "standard-training": (_saelens("standard", training=True), "save_model", ("sparse", "residual")),
    "standard-resid-pre": (
        _saelens("standard", metadata={"hook_name": f"blocks.{LAYER + 1}.hook_resid_pre"}),
        "save_model",
        ("sparse", "residual"),
    ),
    "standard-no-centring": (_saelens("standard", apply_b_dec_to_input=False), "save_model", ("sparse", "residual")),
    "standard-fold-ln": (
        _saelens("standard", metadata={"model_from_pretrained_kwargs": {"fold_ln": True, "center_unembed": True}}),
        "save_model",
        ("sparse", "residual"),
    ),
    "topk": (_saelens("topk"), "save_model", ("topk", "residual")),
    "topk-rescaled": (_saelens("topk", rescale_acts_by_decoder_norm=True), "save_model", ("topk", "residual")),
    "topk-training": (_saelens("topk", training=True), "save_model", ("topk", "residual")),
    "topk-training-inference": (_saelens("topk", training=True), "save_inference_model", ("topk", "residual")),
    "jumprelu": (_saelens("jumprelu"), "save_model", ("jumprelu", "residual")),
    "jumprelu-training": (_saelens("jumprelu", training=True), "save_model", ("jumprelu", "residual")),
    "transcoder": (_saelens("transcoder"), "save_model", ("transcoder", "mlp_in")),
    "gated": (_saelens("gated"), "save_model", ("gated", "residual")),
    "gated-training": (_saelens("gated", training=True), "save_model", ("gated", "residual")),
    "gated-training-inference": (_saelens("gated", training=True), "save_inference_model", ("gated", "residual")),
    "gated-no-centring": (_saelens("gated", apply_b_dec_to_input=False), "save_model", ("gated", "residual")),
    "skip-transcoder": (_saelens("skip_transcoder"), "save_model", ("transcoder", "mlp_in")),
    "normalised": (_saelens("standard", normalize_activations="layer_norm"), "save_model", "normalize_activations"),
    "head": (_saelens("standard", metadata={"hook_head_index": 1}), "save_model", "hook_head_index"),
    "hook-z": (
        _saelens("standard", reshape_activations="hook_z", metadata={"hook_name": f"blocks.{LAYER}.attn.hook_z"}),
        "save_model",
        "reshape_activations",
    ),
    "centred-residual": (
        _saelens("topk", metadata={"model_from_pretrained_kwargs": {"center_writing_weights": True}}),
        "save_model",
        "center_writing_weights",
    ),
    "resid-mid": (
        _saelens("standard", metadata={"hook_name": f"blocks.{LAYER}.hook_resid_mid"}),
        "save_model",
        "hook_name",
    ),
    "transcoder-mlp-in": (
        _saelens("transcoder", metadata={"hook_name": f"blocks.{LAYER}.hook_mlp_in"}),
        "save_model",
        "hook_name",
    ),
    "transcoder-other-layer": (
        _saelens("transcoder", metadata={"hook_name_out": f"blocks.{LAYER + 1}.hook_mlp_out"}),
        "save_model",
        "hook_name_out",
    ),
    "hf-model": (
        _saelens("standard", metadata={"model_class_name": "AutoModelForCausalLM"}),
        "save_model",
        "model_class_name",
    ),
}


def _input(case: str, acts: dict[str, torch.Tensor]) -> torch.Tensor:
    return acts["mlp_in"] if "transcoder" in case else acts["residual"]


@pytest.mark.parametrize("case", list(SAELENS_CASES))
def test_saelens_configurations_import_exactly_or_are_refused(
    case: str, app: Appliance, stored: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    make, save, expected = SAELENS_CASES[case]
    theirs = make()
    x = _input(case, stored)
    params = dict(theirs.named_parameters())
    randomise(params, x, centre=theirs.cfg.apply_b_dec_to_input)
    folder = tmp_path / case
    getattr(theirs, save)(folder)
    job = import_upload(app, folder)
    if isinstance(expected, str):
        assert job["status"] == "failed" and job["error"]["code"] == "VALIDATION_ERROR", job
        assert expected in job["error"]["message"], job["error"]["message"]
        return
    assert job["status"] == "completed", job["error"]
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    assert (training["encoder_type"], training["layer"], training["hook_type"]) == (*expected[:1], LAYER, expected[1])
    ours, metadata = load_folder(app.data_dir / "trainings" / training["id"] / "export")
    theirs.eval()
    with torch.no_grad():
        assert_close(ours.encode(x), theirs.encode(x))
        assert_close(ours.reconstruct(x), theirs(x))
    # Re-exported under our hook names, with the kwargs under which TransformerLens holds those tensors.
    assert metadata["model_from_pretrained_kwargs"] == TRANSFORMER_LENS_KWARGS
    assert metadata["model_class_name"] == "HookedTransformer"
    assert metadata["hook_name"] == (MLP_IN if expected[1] == "mlp_in" else RESID)
    if expected[0] == "transcoder":
        assert metadata["hook_name_out"] == MLP_OUT


def test_our_skip_shape_imports_as_skip(app: Appliance, stored: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """A SAELens skip transcoder of our skip SAE's shape (one hook in and out, W_skip = alpha * I) is
    read as a skip SAE; any other W_skip keeps it a transcoder with its full skip matrix."""
    theirs = _saelens("skip_transcoder", metadata={"hook_name": RESID, "hook_name_out": RESID})()
    x = stored["residual"]
    randomise(dict(theirs.named_parameters()), x, centre=False)
    with torch.no_grad():
        theirs.W_skip.copy_(0.4 * torch.eye(D))
    theirs.save_model(tmp_path / "skip")
    job = import_upload(app, tmp_path / "skip")
    assert job["status"] == "completed", job["error"]
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    assert (training["encoder_type"], training["hook_type"]) == ("skip", "residual")
    ours, metadata = load_folder(app.data_dir / "trainings" / training["id"] / "export")
    assert metadata["hook_name_out"] == RESID and float(ours.alpha) == pytest.approx(0.4)
    with torch.no_grad():
        assert_close(ours.encode(x), theirs.encode(x))
        assert_close(ours.reconstruct(x), theirs(x))


@pytest.mark.parametrize("arch", BATCH_TOPK)
def test_saelens_batch_topk_files_import_as_themselves(
    arch: str, app: Appliance, stored: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    """A BatchTopK or Matryoshka BatchTopK SAE trained by SAELens (its own training class, decoder norms
    rescaled as it trains them by default) and saved as it saves them for inference (a JumpReLU with
    the threshold per latent): imported through the API as that architecture, with its k and groups,
    and the latents and reconstructions SAELens computes from the same file."""
    from sae_lens import SAE
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    widths = [32, 128, D_SAE]
    metadata = SAEMetadata(model_name="demo", hook_name=RESID)
    if arch == "batchtopk":
        theirs = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D, d_sae=D_SAE, k=24, metadata=metadata))
    else:
        config = MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=D, d_sae=D_SAE, k=24, matryoshka_widths=list(widths), metadata=metadata
        )
        theirs = MatryoshkaBatchTopKTrainingSAE(config)
    x = stored["residual"]
    randomise(dict(theirs.named_parameters()), x, centre=True)
    with torch.no_grad():
        _, hidden_pre = theirs.encode_with_hidden_pre(x)  # in the units its threshold is learned in
        theirs.topk_threshold.fill_(_off_data_threshold(hidden_pre))
    theirs.save_inference_model(tmp_path / arch)
    assert json.loads((tmp_path / arch / "cfg.json").read_text())["architecture"] == "jumprelu"

    job = import_upload(app, tmp_path / arch)
    assert job["status"] == "completed", job["error"]
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    assert (training["encoder_type"], training["hook_type"]) == (arch, "residual")
    ours, saved = load_folder(app.data_dir / "trainings" / training["id"] / "export")
    assert ours.cfg.architecture == arch and ours.cfg.k == 24
    assert ours.cfg.matryoshka_widths == (widths if arch != "batchtopk" else None)
    assert saved["training_architecture"] == arch  # and our export says so again
    loaded = SAE.load_from_disk(tmp_path / arch)
    with torch.no_grad():
        z = ours.encode(x)
        assert_close(z, loaded.encode(x))
        assert_close(ours.reconstruct(x), loaded(x))
        assert 1 < l0(z) < D_SAE / 4  # the threshold, not a ReLU, decides
