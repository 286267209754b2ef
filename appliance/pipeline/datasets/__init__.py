"""Pipeline stage 1, datasets: import a local file, download from the Hub, tokenize; the demo corpus."""
