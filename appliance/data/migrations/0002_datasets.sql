-- Datasets: the rows live here, the data as Arrow files under datasets/<id>/: SQLite holds what is queried, Arrow what is streamed.
CREATE TABLE datasets (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('huggingface', 'upload', 'local', 'demo')),
    repo_id       TEXT,
    config        TEXT,
    split         TEXT,
    format        TEXT,
    text_column   TEXT NOT NULL DEFAULT 'text',
    status        TEXT NOT NULL CHECK (status IN ('downloading', 'ingesting', 'ready', 'error')),
    error_code    TEXT,
    error_message TEXT,
    job_id        TEXT,
    num_samples   INTEGER,
    size_bytes    INTEGER,
    stats         TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX datasets_created ON datasets (created_at);

-- One row per sample for the browser; the text is indexed for full-text search by samples_fts.
CREATE TABLE dataset_samples (
    rowid      INTEGER PRIMARY KEY,
    dataset_id TEXT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL,
    split      TEXT NOT NULL,
    length     INTEGER NOT NULL,
    text       TEXT NOT NULL,
    metadata   TEXT
);
CREATE INDEX dataset_samples_browse ON dataset_samples (dataset_id, split, idx);

CREATE VIRTUAL TABLE samples_fts USING fts5(text, content='dataset_samples', content_rowid='rowid',
                                           tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER dataset_samples_ai AFTER INSERT ON dataset_samples BEGIN
    INSERT INTO samples_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER dataset_samples_ad AFTER DELETE ON dataset_samples BEGIN
    INSERT INTO samples_fts (samples_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
