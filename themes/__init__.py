"""Textual themes for the console."""
