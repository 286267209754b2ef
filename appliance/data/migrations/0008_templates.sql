-- Saved settings: extraction templates now; training templates and steering presets share the table.
CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('extraction', 'training', 'steering')),
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_favorite INTEGER NOT NULL DEFAULT 0,
    config      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX templates_kind ON templates (kind, is_favorite, created_at);
