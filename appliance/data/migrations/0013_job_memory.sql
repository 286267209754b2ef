-- What memory admission planned for a job (the worker's resident memory when it was admitted plus what it
-- reserved) and the worker's peak while it ran (resident set, plus the CUDA allocator's peak on a GPU), in MB.
ALTER TABLE jobs ADD COLUMN memory_planned_mb INTEGER;
ALTER TABLE jobs ADD COLUMN memory_peak_mb INTEGER;
