"""Crash-safe state store: journal + snapshot, smart (batched) and simple (baseline) save policies."""
