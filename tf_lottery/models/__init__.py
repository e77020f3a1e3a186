"""Models by name: the networks of the lottery-ticket papers (see `registry`)."""

from tf_lottery.models.registry import build_model, builder_defaults, canonical_name, names

__all__ = ["build_model", "builder_defaults", "canonical_name", "names"]
