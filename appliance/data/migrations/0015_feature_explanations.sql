-- A language model's explanation of a feature and its judges' scores (appliance/pipeline/features/explain.py),
-- one row per feature and explainer ("openai:<model>@<host>", "local:<model id>"): the cache a resumed run
-- skips. The latest explanation is also the feature's llm_label, its scores the features' detection/fuzzing
-- columns (0014). A new extraction replaces the features, and with them these rows (its contexts are new).
CREATE TABLE feature_explanations (
    training_id        TEXT NOT NULL,
    idx                INTEGER NOT NULL,
    explainer          TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('scored', 'explained', 'timeout', 'unauthorized',
                                                      'unreachable', 'upstream_error', 'malformed')),
    message            TEXT,              -- why it is not scored (safe text: no key)
    explanation        TEXT,
    method             TEXT,              -- how the scores were made (examples, calls, interval)
    detection          REAL,              -- balanced accuracy, with its 95% interval
    detection_low      REAL,
    detection_high     REAL,
    fuzzing            REAL,
    fuzzing_low        REAL,
    fuzzing_high       REAL,
    judged             TEXT,              -- JSON: per method, the examples the judge saw and its answers
    explainer_examples TEXT,              -- JSON: the excerpts the explainer saw, marked as it saw them
    calls              INTEGER NOT NULL DEFAULT 0,
    created_at         REAL NOT NULL,
    PRIMARY KEY (training_id, idx, explainer),
    FOREIGN KEY (training_id, idx) REFERENCES features (training_id, idx) ON DELETE CASCADE
) WITHOUT ROWID;
