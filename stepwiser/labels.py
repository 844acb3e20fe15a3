"""Contract C3's import path: `from stepwiser.labels import label_chunks`. The code is in
`stepwiser.core.labels`."""
from stepwiser.core.labels import LABEL_TYPES, LabelParams, check_method, label_chunks, label_from_pair

__all__ = ["LABEL_TYPES", "LabelParams", "check_method", "label_chunks", "label_from_pair"]
