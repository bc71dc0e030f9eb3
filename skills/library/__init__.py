"""The built-in skill library: one module per concern."""
