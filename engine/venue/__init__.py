"""Venues: the contract every exchange account implements, typed errors, and the Bybit V5 venue."""
