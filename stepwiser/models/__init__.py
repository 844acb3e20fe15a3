"""Layer 2: model names and folders: the bundled GGUF default, Hub ids and local folders (`loading`).
Imports `core` and `io` only."""
