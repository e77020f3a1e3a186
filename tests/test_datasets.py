"""`tf_lottery.datasets`: the public data helpers the README and notebooks use."""

import pathlib
import subprocess
import sys

import numpy as np

from tf_lottery.datasets import mnist1d


def test_mnist1d_is_the_canonical_split_with_a_validation_hold_out():
    (x, y), (x_val, y_val), (x_test, y_test) = mnist1d()
    assert (x.shape, x_val.shape, x_test.shape) == ((3500, 40), (500, 40), (1000, 40))
    assert x.dtype == np.float32 and y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    (x_all, _), (x_none, _), _ = mnist1d(validation=0)
    np.testing.assert_array_equal(x_all[:3500], x)
    np.testing.assert_array_equal(x_all[3500:], x_val)
    assert len(x_none) == 0


def test_the_module_imports_without_mnist1d_and_a_call_says_what_to_install():
    program = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'mnist1d':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['tf_lottery']\n"  # the facade's lazy mode: no TensorFlow needed here
        "import tf_lottery.datasets as datasets\n"
        "try:\n"
        "    datasets.mnist1d()\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    root = pathlib.Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert result.stdout.strip() == (
        "tf_lottery.datasets.mnist1d() needs the `mnist1d` package. Install it with: "
        "pip install 'tf_lottery[experiments]' (or pip install mnist1d)."
    ), result.stderr[-2000:]
