"""Cross-task transfer (XTRA stage 2): task re-weighting of the offline games (Eq. 1-2, App. B)."""
