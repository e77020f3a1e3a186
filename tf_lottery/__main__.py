"""`python -m tf_lottery`: the command line, the same as `tf_lottery` and `python -m tf_lottery.main`.

`python -m tf_lottery --version` answers without loading TensorFlow (see
`tf_lottery.cli.command`).
"""

from tf_lottery.cli.command import run

if __name__ == "__main__":
    run()
