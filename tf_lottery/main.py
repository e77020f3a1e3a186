"""`python -m tf_lottery.main`: the experiment command line (see `tf_lottery.cli.main`)."""

from tf_lottery.cli.main import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
