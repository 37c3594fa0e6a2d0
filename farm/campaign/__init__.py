"""Sharded generation campaigns: submission, actor pool, workers, manifest, export, validation."""
