"""`python -m tf_lottery.main`: the experiment command line (see `tf_lottery.cli.command`)."""

from tf_lottery.cli.command import run

__all__ = ["run"]

if __name__ == "__main__":
    run()
