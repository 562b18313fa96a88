"""What the engine shows about itself to tools outside it: the Prometheus metrics export."""
