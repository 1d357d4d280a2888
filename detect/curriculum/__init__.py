"""Training curricula that plug into any single-frame detector (DFFC, DIH, BabyStep)."""
