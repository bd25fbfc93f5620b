"""Paper experiments run with keras-ssr (one sub-package per paper)."""
