"""One memory budget for all jobs: the worker's admission of jobs, and the least a job needs (which the API uses
to refuse a job that can never fit)."""
