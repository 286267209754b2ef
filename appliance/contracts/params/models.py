"""Parameters of the model jobs (``model.register``, ``model.import``, ``model.download``), and the
torch-free shape of what the worker reads from a loaded model: its architecture and hook points, which
other jobs' parameters carry (an extraction names the hook points it captures)."""

from __future__ import annotations

from typing import Literal

import msgspec

HookType = Literal["residual", "mlp_in", "mlp", "attention"]


class HookPoint(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One place a hook can read a layer's activations. ``name`` is the SAELens / TransformerLens name
    (``blocks.3.hook_resid_post``), ``module`` the module path the worker hooks. ``input``: read the
    module's input rather than its output (``mlp_in``, what enters the MLP).

    ``norm`` (``mlp_in``): the module path of the layer norm that feeds the MLP. The point is that
    norm's normalised value before its affine, as TransformerLens' ``ln2.hook_normalized`` holds it,
    recovered in fp32 from the MLP's input y = n * (weight + ``norm_offset``) + bias; the offset is 1
    where the norm scales by (1 + weight) (Gemma)."""

    layer: int
    type: HookType
    name: str
    module: str
    input: bool = False
    norm: str = ""
    norm_offset: float = 0.0

    @property
    def after_affine(self) -> bool:
        """An ``mlp_in`` point stored before ``norm`` existed: it read the MLP's input after the norm's
        affine under the name of the value before it, so nothing may be made from it any more."""
        return self.type == "mlp_in" and not self.norm


class ModelArchitecture(msgspec.Struct, kw_only=True):
    """Family, sizes and hook points, read once by the worker when the model loads and stored with the
    model's row, so the API can plan and validate without torch."""

    family: str
    layers: int
    d_model: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    d_mlp: int | None = None
    vocab_size: int | None = None
    context_length: int | None = None
    parameters: int
    hook_points: list[HookPoint] = msgspec.field(default_factory=list)
    class_name: str = msgspec.field(name="class", default="")
    layers_module: str = ""


class ModelRegisterParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Load a model whose files are already in ``path`` (the demo model's, or a finished download's)."""

    model_id: str
    path: str
    precision: str = "fp32"


class ModelImportParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model_id: str
    source: str  # a folder under the imports folder, already checked by the API
    path: str  # the model's own folder, where the files are copied
    precision: str = "fp32"


class ModelDownloadParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The Hub token, if any, is not here: it is stored apart as a secret under the model's id, so it
    never lands in the jobs table."""

    model_id: str
    repo_id: str
    path: str
    precision: str = "fp32"
    revision: str | None = None
    trust_remote_code: bool = False

    def register(self) -> ModelRegisterParams:
        """The load that follows the download."""
        return ModelRegisterParams(model_id=self.model_id, path=self.path, precision=self.precision)
