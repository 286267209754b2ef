"""Pipeline stage 3, activations: extract a model's activations over a dataset to disk, or stream them to a training."""
