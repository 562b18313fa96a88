"""The trading engine: everything that trades. Never imports textual or rich."""
