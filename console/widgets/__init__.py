"""The console's widgets: each renders one part of a DashboardSnapshot and repaints only what changed."""
