"""The Textual operator console and the ``opconsole`` command line."""
