"""Experiment kinds registered with `tf_lottery.experiments.registry`."""
