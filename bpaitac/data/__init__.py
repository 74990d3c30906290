"""Inputs to arrays: downloads, alignment, Tn5 insertions, OCR table, splits, training arrays,
Tn5-bias sets, DNA encoding and training batches (docs/architecture.md)."""
