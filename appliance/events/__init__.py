"""The event log seen live: the API process fans new rows of the events table out to SSE clients."""
