-- Models: the row here, the files under models/<id>/ (the demo model's files ship with the code).
-- `architecture` is the JSON the worker read from the module tree, so the API never loads a model.
CREATE TABLE models (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('huggingface', 'local', 'demo')),
    repo_id       TEXT,
    revision      TEXT,
    precision     TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('downloading', 'loading', 'quantizing', 'ready', 'error')),
    error_code    TEXT,
    error_message TEXT,
    job_id        TEXT,
    path          TEXT,
    size_bytes    INTEGER,
    architecture  TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX models_created ON models (created_at);
