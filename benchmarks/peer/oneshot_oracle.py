"""Runs the reference Wanda and SparseGPT code on saved weights and activations (PyTorch).

Run by `benchmarks/oneshot_parity.py` with the Python of a scratch
environment that has torch and numpy (not tf_lottery's environment); the
reference repositories are given by path and imported from there, never
copied. Two adaptations, neither touching the references' arithmetic:

- `transformers` is replaced by a stub module with a `Conv1D` class: the
  reference `sparsegpt.py` imports it only for `isinstance` checks.
- `torch.cuda.synchronize` is a no-op: the reference calls it to time
  itself, and a CPU-only torch raises there.

Wanda's statistic is its own `WrappedGPT.add_batch`, called once per
calibration sample as its calibration loop calls it once per sequence. Its
selection lives inline in `prune_wanda` (which downloads C4), so the three
lines that turn the statistic into a mask are re-typed below, marked.

    /tmp/peer/bin/python benchmarks/peer/oneshot_oracle.py ours.npz reference.npz \\
        --wanda-repo PATH --sparsegpt-repo PATH
"""

import argparse
import sys
import types

import numpy as np
import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ours")
    parser.add_argument("out")
    parser.add_argument("--wanda-repo", required=True)
    parser.add_argument("--sparsegpt-repo", required=True)
    args = parser.parse_args()

    stub = types.ModuleType("transformers")
    stub.Conv1D = type("Conv1D", (), {})
    sys.modules["transformers"] = stub
    torch.cuda.synchronize = lambda *a, **k: None
    sys.path.insert(0, args.sparsegpt_repo)
    import sparsegpt as reference_sparsegpt  # IST-DASLab/sparsegpt, sparsegpt.py

    sys.path.insert(0, f"{args.wanda_repo}/lib")
    import layerwrapper as reference_wanda  # locuslab/wanda, lib/layerwrapper.py

    data = dict(np.load(args.ours))
    layers = sorted({int(k.split("/")[1]) for k in data if k.startswith("dense/")})
    out = {}
    for name in ("wanda", "wanda_2:4", "sparsegpt", "sparsegpt_2:4"):
        prune_n, prune_m = (2, 4) if name.endswith("2:4") else (0, 0)
        for i in layers:
            w = torch.from_numpy(data[f"dense/{i}/w"].T.copy())  # nn.Linear holds (out, in)
            x = torch.from_numpy(data[f"{name}/{i}/x"])
            layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            layer.weight.data = w.clone()
            if name.startswith("wanda"):
                wrapped = reference_wanda.WrappedGPT(layer)
                for sample in x:
                    wrapped.add_batch(sample[None, None, :], None)
                # -- re-typed from locuslab/wanda lib/prune.py prune_wanda (unstructured and n:m) --
                W_metric = torch.abs(layer.weight.data) * torch.sqrt(wrapped.scaler_row.reshape((1, -1)))
                W_mask = torch.zeros_like(W_metric) == 1
                if prune_n != 0:
                    for ii in range(W_metric.shape[1]):
                        if ii % prune_m == 0:
                            tmp = W_metric[:, ii : (ii + prune_m)].float()
                            W_mask.scatter_(1, ii + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
                else:
                    sort_res = torch.sort(W_metric, dim=-1, stable=True)
                    indices = sort_res[1][:, : int(W_metric.shape[1] * 0.5)]
                    W_mask.scatter_(1, indices, True)
                layer.weight.data[W_mask] = 0
                # -- end of the re-typed lines --
                mask = ~W_mask
            else:
                gpt = reference_sparsegpt.SparseGPT(layer)
                for sample in x:
                    gpt.add_batch(sample[None, None, :], None)
                gpt.fasterprune(0.5, prunen=prune_n, prunem=prune_m, blocksize=128, percdamp=0.01)
                mask = layer.weight.data != 0
            out[f"{name}/{i}/w"] = layer.weight.data.numpy().T.copy()
            out[f"{name}/{i}/mask"] = mask.numpy().T.copy()
    np.savez(args.out, **out)


if __name__ == "__main__":
    main()
