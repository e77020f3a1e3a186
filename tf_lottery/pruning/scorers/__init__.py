"""Scores computed from gradients: Taylor/SNIP, GraSP, SynFlow, and batch gradients."""
