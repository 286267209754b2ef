-- A dataset tokenized by one tokenizer with one set of settings (the latest run per tokenizer wins).
-- The token ids live as Arrow under datasets/<dataset_id>/tokenized/<tokenizer>/.
CREATE TABLE dataset_tokenizations (
    dataset_id  TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    tokenizer   TEXT NOT NULL,
    settings    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('tokenizing', 'ready', 'error')),
    job_id      TEXT,
    stats       TEXT,
    error_message TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (dataset_id, tokenizer)
);
