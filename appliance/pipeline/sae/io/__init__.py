"""SAEs on disk in the field's layouts: SAELens export and import, EleutherAI sparsify import."""
