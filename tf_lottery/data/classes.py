"""Tasks made of a dataset's classes: `"0-5"` -> a pipeline of those classes, relabelled.

The `transfer` kind's source and target tasks and the `pretrain` task
(`config.pretrain.classes`) are class subsets of one dataset.

Example:

```python
digits = class_subset(load_dataset(config.dataset), parse_classes("0-5", "transfer.source_classes"))
```
"""

from __future__ import annotations

import dataclasses

import numpy as np


def parse_classes(spec: str, key: str) -> list[int]:
    """`"0-5"` -> `[0, 1, 2, 3, 4, 5]`, `"1,3,7-8"` -> `[1, 3, 7, 8]`; errors name `config.<key>`."""
    classes = []
    try:
        for item in str(spec).split(","):
            item = item.strip()
            if not item:
                continue
            low, _, high = item.partition("-")
            classes.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        classes = []
    if not classes or len(set(classes)) != len(classes) or min(classes) < 0:
        raise ValueError(
            f"Invalid value for `config.{key}`: expected distinct class indices or ranges, e.g. '0-5' "
            f"or '1,3,7-8'. Received: {spec!r}."
        )
    return classes


def class_subset(data, classes: list[int]):
    """The pipeline restricted to `classes`, relabelled `0..len(classes)-1` in that order."""
    lookup = np.full(int(data.num_classes), -1, np.int64)
    if max(classes) >= data.num_classes:
        raise ValueError(
            f"Invalid class {max(classes)}: dataset '{data.name}' has classes 0..{data.num_classes - 1}."
        )
    lookup[classes] = np.arange(len(classes))

    def keep(x, y):
        chosen = lookup[np.asarray(y, np.int64)] >= 0
        return np.asarray(x)[chosen], lookup[np.asarray(y, np.int64)[chosen]]

    x_train, y_train = keep(data.x_train, data.y_train)
    x_val, y_val = keep(data.x_val, data.y_val)
    x_test, y_test = keep(data.x_test, data.y_test)
    return dataclasses.replace(
        data,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(classes),
    )
