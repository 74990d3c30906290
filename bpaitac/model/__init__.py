"""The bpAI-TAC network and its variants, the losses, and predictions with trained networks."""
