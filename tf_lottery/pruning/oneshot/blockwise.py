"""Block-wise calibration: the calibration data run through the model one block at a time.

A *block* is one call (node) of a functional graph whose layer holds
prunable steps: a transformer layer of a keras_hub backbone (a
`TransformerDecoder` called with `(x, decoder_padding_mask=...)`), or a
top-level layer of a functional or Sequential model (a wrapped Dense is a
block of one step). A node whose layer is itself a functional or Sequential
model (the backbone inside `GPT2CausalLM`) is opened and its own nodes are
the blocks. Nodes without steps (embeddings, adds, norms) just run.

For each block, the tensors it reads (the residual stream, and whatever
else it is called with: padding masks, attention masks, position ids) are
held for every calibration batch; the block runs once on them with the
hooks of `calibration.capture` on all its steps, which are then pruned in
forward order (as locuslab/wanda and IST-DASLab/sparsegpt do: every layer of
a block is calibrated on the block's inputs before any of its layers is
pruned); then the block runs once more, pruned, and its outputs replace
whatever no later node reads. With `true_sequential` (GPTQ's option) each
step is calibrated separately instead, by running the block with its earlier
steps already pruned, stopped after the step's layers. So memory holds the
graph's live tensors at one block boundary (for a transformer: the residual
stream and the mask), and compute is 2 block evaluations per block (`steps +
1` with `true_sequential`) instead of rerunning the model from
its inputs for every step. The walk ends after the last block with steps.

Models whose blocks cannot be isolated (a subclassed model's arbitrary
`call`, a prunable layer called from two places of the graph) are left to
the caller, who reruns the whole model per step (`plan` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from tf_lottery import _keras_compat

_SYMBOLIC = object()  # stands for a graph tensor when only the structure of a call is read


class _Done(Exception):
    """Every step is pruned: the rest of the graph need not run."""


@dataclass
class Plan:
    """How to walk one functional graph: what each node does with the steps it holds."""

    layer: object  # the model (or nested model) whose graph this is
    graph: object
    nodes: list
    kinds: list  # per node: None (just run), a list of step indices (a block), or a nested Plan
    blocks: int = 0

    def step_order(self) -> list[int]:
        order = []
        for kind in self.kinds:
            if isinstance(kind, Plan):
                order += kind.step_order()
            elif kind:
                order += kind
        return order


def _holders(layer, wrappers: list) -> set[int]:
    if not isinstance(layer, keras.layers.Layer):  # a raw op in the graph (`x[0]`, `h + x`)
        return set()
    inside = {id(x) for x in _keras_compat.flatten_layers(layer)}
    return {i for i, w in enumerate(wrappers) if id(w) in inside}


def _plan_graph(layer, graph, wrappers: list, wanted: set[int]) -> Plan | str:
    nodes = _keras_compat.graph_nodes(graph)
    held = [_holders(node.operation, wrappers) & wanted for node in nodes]
    for i in wanted:
        places = [node.operation.name for node, h in zip(nodes, held) if i in h]
        if len(places) != 1:
            where = f"from {len(places)} places ({', '.join(places)})" if places else "outside its graph"
            return f"the prunable layer '{wrappers[i].name}' of '{layer.name}' is called {where}"
    kinds = []
    blocks = 0
    for node, steps in zip(nodes, held):
        kind = sorted(steps) or None
        inner = _keras_compat.functional_graph(node.operation)
        args, kwargs = node.arguments({x: _SYMBOLIC for x in node.inputs})
        # Keras records `mask=None` (per input) on a model called in a graph; a real mask is
        # not passed on here, so such a node stays one block.
        plain = set(kwargs) <= {"mask"} and all(m is None for m in keras.tree.flatten(kwargs.get("mask")))
        if steps and inner is not None and len(args) == 1 and plain:
            sub = _plan_graph(node.operation, inner, wrappers, steps)
            if isinstance(sub, Plan):  # else the nested model is one block
                kind = sub
        blocks += kind.blocks if isinstance(kind, Plan) else bool(kind)
        kinds.append(kind)
    return Plan(layer, graph, nodes, kinds, blocks)


def plan(model, wrappers: list) -> Plan | str:
    """The walk for steps `wrappers` (in forward order), or why the blocks cannot be isolated."""
    graph = _keras_compat.functional_graph(model)
    if graph is None:
        return f"'{model.name}' is a {type(model).__name__} with its own `call`, not a functional graph"
    result = _plan_graph(model, graph, wrappers, set(range(len(wrappers))))
    if isinstance(result, Plan) and result.step_order() != sorted(result.step_order()):
        return f"the graph of '{model.name}' runs its prunable layers in another order than its calls"
    return result


@dataclass
class _Walk:
    steps: list
    calibrate: Callable  # (step indices, forwards) -> None: capture in one pass, then prune each step
    verbose: Callable[[str], None] | None
    remaining: int
    true_sequential: bool = False
    block: int = 0
    total: int = 0


def run(
    plan_: Plan,
    data: list,
    steps: list,
    calibrate: Callable,
    verbose: Callable | None = None,
    true_sequential: bool = False,
) -> None:
    """Walks the model block by block over the calibration batches `data`, calling
    `calibrate(indices, forwards)` once per block with the block's steps (as both
    reference implementations do: every step's inputs from the block before any of
    its steps is pruned), or once per step with `true_sequential` (each step's
    inputs from the block with its earlier steps already pruned)."""
    walk = _Walk(
        steps, calibrate, verbose, remaining=len(steps), total=plan_.blocks, true_sequential=true_sequential
    )
    inputs = [_keras_compat.graph_input_values(plan_.layer, plan_.graph, batch) for batch in data]
    try:
        _walk_graph(plan_, inputs, walk)
    except _Done:
        pass


def _walk_graph(plan_: Plan, inputs: list[list], walk: _Walk) -> list[list]:
    """The graph's flat outputs per batch, its blocks pruned on the way."""
    output_ids = _keras_compat.graph_output_ids(plan_.graph)
    values = [dict(zip(_keras_compat.graph_input_ids(plan_.graph), flat)) for flat in inputs]
    readers: dict[int, int] = {}
    for node in plan_.nodes:
        for x in node.inputs:
            readers[x] = readers.get(x, 0) + 1
    for node, kind in zip(plan_.nodes, plan_.kinds):
        if any(x not in values[0] for x in node.inputs):
            continue  # not computable from these inputs, as `Functional.call` skips it
        if isinstance(kind, Plan):
            nested = []
            for v in values:
                args, _ = node.arguments(v)
                nested.append(_keras_compat.graph_input_values(node.operation, kind.graph, args[0]))
            outputs = _walk_graph(kind, nested, walk)
        else:
            if kind:
                _prune_block(node, kind, values, walk)
            outputs = [node.call(v) for v in values]
        for v, flat in zip(values, outputs):
            v.update(zip(node.outputs, flat))
        for x in node.inputs:
            readers[x] -= 1
            if readers[x] == 0 and x not in output_ids:
                for v in values:
                    v.pop(x, None)
    return [[v[x] for x in output_ids] for v in values]


def _prune_block(node, step_indices: list[int], values: list[dict], walk: _Walk) -> None:
    walk.block += 1
    if walk.verbose is not None:
        walk.verbose(f"block {walk.block}/{walk.total} '{node.operation.name}': {len(step_indices)} step(s)")
    forwards = [lambda v=v: node.call(v) for v in values]
    for group in [[i] for i in step_indices] if walk.true_sequential else [list(step_indices)]:
        walk.calibrate(group, forwards)
        walk.remaining -= len(group)
    if walk.remaining == 0:
        raise _Done
