"""The console's modal screens: help, confirmation, rollback panel, TTL tuning, trade form."""
