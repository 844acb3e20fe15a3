"""Layer 2: records (C2), manifests and resume (C7), typed configs from YAML (`config`), progress lines
and the end-of-stage summary. Imports only `stepwiser.core` and `stepwiser.errors`."""
