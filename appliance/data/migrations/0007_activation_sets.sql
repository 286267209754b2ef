-- Activation sets: fp16 safetensors shards + manifest.json under activations/<id>/.
CREATE TABLE activation_sets (
    id            TEXT PRIMARY KEY,
    model_id      TEXT NOT NULL,
    dataset_id    TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('extracting', 'ready', 'error')),
    config        TEXT NOT NULL,
    manifest      TEXT,
    size_bytes    INTEGER,
    job_id        TEXT,
    error_code    TEXT,
    error_message TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX activation_sets_model ON activation_sets (model_id);
CREATE INDEX activation_sets_dataset ON activation_sets (dataset_id);
