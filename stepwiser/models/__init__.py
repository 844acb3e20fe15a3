"""Layer 3: model names and folders: the bundled GGUF default, Hub ids and local folders (`loading`);
the micro model family: its word-level domain tokenizer, coverage check and sizes (`micro`).
Imports `core` and `io` only."""
