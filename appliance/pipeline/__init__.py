"""Machine learning side of the appliance; imported by the worker only (torch, datasets...)."""
