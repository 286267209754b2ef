"""What the API and the worker agree on, free of torch: job parameters, event payloads, training settings and the
formats of the files one writes and the other reads."""
