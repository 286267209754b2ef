"""Durable jobs: the job table, its lifecycle, the event log and the Huey transport."""
