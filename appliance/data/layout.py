"""Where everything lives in the data dir: one object for the API and the worker alike, so a path is
spelled once. Folders are named by the id of the resource that owns them; deleting a resource removes
its folders and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataLayout:
    root: Path

    # -- the appliance's own files ----------------------------------------------------------------
    @property
    def db(self) -> Path:
        return self.root / "mistudio.db"

    @property
    def queue(self) -> Path:
        return self.root / "queue.db"

    @property
    def worker_lock(self) -> Path:
        return self.root / "worker.lock"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def cache(self) -> Path:
        """Downloads in progress and library caches (Hugging Face's among them)."""
        return self.root / "cache"

    @property
    def hf_home(self) -> Path:
        return self.cache / "huggingface"

    @property
    def model_downloads(self) -> Path:
        return self.cache / "model-downloads"

    def model_staging(self, repo_id: str) -> Path:
        return self.model_downloads / repo_id.replace("/", "--")

    # -- uploads and server-side imports ----------------------------------------------------------
    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    def upload(self, resource_id: str) -> Path:
        """Where an upload lands until its import job has read it."""
        return self.uploads / resource_id

    @property
    def imports(self) -> Path:
        """The folder whose files the API may import by name (MISTUDIO_DATA_DIR/imports)."""
        return self.root / "imports"

    # -- datasets ---------------------------------------------------------------------------------
    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    def dataset(self, dataset_id: str) -> Path:
        return self.datasets / dataset_id

    def dataset_arrow(self, dataset_id: str) -> Path:
        """The samples as Arrow, read memory-mapped."""
        return self.dataset(dataset_id) / "arrow"

    def dataset_cache(self, dataset_id: str) -> Path:
        return self.dataset(dataset_id) / "cache"

    def tokenized(self, dataset_id: str, tokenizer: str) -> Path:
        return self.dataset(dataset_id) / "tokenized" / tokenizer

    def tokenized_arrow(self, dataset_id: str, tokenizer: str) -> Path:
        return self.tokenized(dataset_id, tokenizer) / "data.arrow"

    # -- models and activations -------------------------------------------------------------------
    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, model_id: str) -> Path:
        return self.models / model_id

    @property
    def activation_sets(self) -> Path:
        return self.root / "activations"

    def activations(self, activation_id: str) -> Path:
        return self.activation_sets / activation_id

    # -- trainings (SAEs) and what is derived from them -------------------------------------------
    @property
    def trainings(self) -> Path:
        return self.root / "trainings"

    def training(self, training_id: str) -> Path:
        return self.trainings / training_id

    def checkpoints(self, training_id: str) -> Path:
        return self.training(training_id) / "checkpoints"

    def export(self, training_id: str) -> Path:
        """The finished SAE in the SAELens layout (cfg.json, weights, sparsity)."""
        return self.training(training_id) / "export"

    def features(self, training_id: str) -> Path:
        return self.training(training_id) / "features"

    def features_partial(self, training_id: str) -> Path:
        """An extraction's arrays while it runs; renamed to ``features`` when it completes."""
        return self.training(training_id) / "features.partial"
