"""Evaluation on the test split: metrics tables, paired tests and Figures 1, 2, S1-S4."""
