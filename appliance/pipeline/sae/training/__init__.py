"""Pipeline stage 4, SAE training: the loop and its checkpoints."""
