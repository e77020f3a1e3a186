"""The command line: one absl app (`python -m tf_lottery.main`, console script `tf_lottery`)."""
