-- Browsing without a split filter seeks straight to a page by sample index (idx runs 0..n-1 within a
-- dataset), instead of skipping OFFSET rows.
CREATE INDEX dataset_samples_by_idx ON dataset_samples (dataset_id, idx);
