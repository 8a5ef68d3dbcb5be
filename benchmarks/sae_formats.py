"""Formats x architectures: SAEs built, briefly trained and saved by SAELens / dictionary_learning themselves,
loaded by gapbound, encodings compared with the library's, and the gap meter run on each.

    python -m benchmarks.sae_formats --out docs/sae_formats_run.json

Needs the ``interop`` extra. Every SAE is built, saved, loaded and compared first; then the meter
runs SAE by SAE, and ``--out`` (JSON) and ``--table`` (markdown) are rewritten after each one, so an
interrupted run keeps its finished rows (rows not yet metered say so). Problem: d_in 64, 256 latents, activations from the paper's generative model
(K=5 active atoms of a random unit-norm dictionary, non-negative codes), 300 Adam steps per SAE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch

from gapbound.meter import measure_gap
from gapbound.models import SAE, load_sae
from gapbound.utils.io import atomic_write_json

D_IN, D_SAE, K_TRUE, K = 64, 256, 5, 8


def data(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(D_IN, D_SAE, generator=g)
    D /= D.norm(dim=0)
    idx = torch.rand(n, D_SAE, generator=g).argsort(1)[:, :K_TRUE]
    S = torch.zeros(n, D_SAE).scatter_(1, idx, torch.rand(n, K_TRUE, generator=g) + 0.5)
    return S @ D.T + 0.01 * torch.randn(n, D_IN, generator=g)


def train(module: torch.nn.Module, encode, decode, X: torch.Tensor, l1: float, steps: int, seed: int) -> None:
    """Brief training through the library's own encode / decode (MSE + L1 on the codes)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    for step in range(steps):
        batch = X[torch.randint(0, X.shape[0], (256,))]
        codes = encode(batch)
        loss = (decode(codes) - batch).pow(2).sum(-1).mean() + l1 * codes.abs().sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def saelens_rows(X: torch.Tensor, root: Path, steps: int):
    import sae_lens as sl

    def build(name, cls, cfg, l1=0.0, training=False, threshold=None):
        sae = cls(cfg)
        if training and hasattr(sae, "topk_threshold"):
            sae.train()
        train(sae, sae.encode, sae.decode, X, l1, steps, seed=len(name))
        path = root / name.replace(" ", "_").replace(",", "")
        if training:
            if threshold is not None:  # what BatchTopK's training keeps: the running min positive activation
                with torch.no_grad():
                    acts = sae.encode(X)
                sae.topk_threshold.fill_(float(acts[acts > 0].min()))
            sae.save_inference_model(path)
        else:
            sae.save_model(path)
        sae.eval()
        reference = sl.SAE.load_from_disk(path)
        return name, path, reference.encode, reference.cfg.architecture()

    c = dict(d_in=D_IN, d_sae=D_SAE)
    yield build("standard", sl.StandardSAE, sl.StandardSAEConfig(**c), l1=3e-3)
    yield build("topk", sl.TopKSAE, sl.TopKSAEConfig(**c, k=K))
    yield build("topk, rescale_acts_by_decoder_norm (unfolded)", sl.TopKSAE, sl.TopKSAEConfig(**c, k=K, rescale_acts_by_decoder_norm=True))
    yield build("topk (training class, folded at save)", sl.TopKTrainingSAE, sl.TopKTrainingSAEConfig(**c, k=K), training=True)
    yield build("jumprelu", sl.JumpReLUSAE, sl.JumpReLUSAEConfig(**c), l1=3e-3)
    yield build("batchtopk (saved as jumprelu)", sl.BatchTopKTrainingSAE, sl.BatchTopKTrainingSAEConfig(**c, k=K),
                training=True, threshold=True)
    yield build("matryoshka batchtopk (saved as jumprelu)", sl.MatryoshkaBatchTopKTrainingSAE,
                sl.MatryoshkaBatchTopKTrainingSAEConfig(**c, k=K, matryoshka_widths=[64, D_SAE]), training=True, threshold=True)
    yield build("gated", sl.GatedSAE, sl.GatedSAEConfig(**c), l1=3e-3)
    yield build("standard, layer_norm", sl.StandardSAE, sl.StandardSAEConfig(**c, normalize_activations="layer_norm"), l1=3e-3)


def dictionary_learning_rows(X: torch.Tensor, root: Path, steps: int):
    from dictionary_learning.dictionary import AutoEncoder, AutoEncoderNew, GatedAutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK
    from dictionary_learning.utils import load_dictionary

    classes = {
        "AutoEncoder": (lambda: AutoEncoder(D_IN, D_SAE), 3e-3),
        "AutoEncoderNew": (lambda: AutoEncoderNew(D_IN, D_SAE), 3e-3),
        "AutoEncoderTopK": (lambda: AutoEncoderTopK(D_IN, D_SAE, K), 0.0),
        "BatchTopKSAE": (lambda: BatchTopKSAE(D_IN, D_SAE, K), 0.0),
        "MatryoshkaBatchTopKSAE": (lambda: MatryoshkaBatchTopKSAE(D_IN, D_SAE, K, group_sizes=[64, D_SAE - 64]), 0.0),
        "JumpReluAutoEncoder": (lambda: JumpReluAutoEncoder(D_IN, D_SAE), 3e-3),
        "GatedAutoEncoder": (lambda: GatedAutoEncoder(D_IN, D_SAE), 3e-3),
    }
    for name, (make, l1) in classes.items():
        ae = make()
        batch_topk = hasattr(ae, "threshold") and ae.threshold.ndim == 0
        encode = (lambda a: lambda x: a.encode(x, use_threshold=False))(ae) if batch_topk else ae.encode
        train(ae, encode, ae.decode, X, l1, steps, seed=len(name))
        if batch_topk:
            with torch.no_grad():
                acts = encode(X)
            ae.threshold.fill_(float(acts[acts > 0].min()))
        path = root / f"dl_{name}"
        path.mkdir()
        torch.save(ae.state_dict(), path / "ae.pt")
        (path / "config.json").write_text(json.dumps({"trainer": {"dict_class": name, "k": K}}))
        reference, _ = load_dictionary(str(path), "cpu")
        yield name, path, reference.encode, name


def compare(format_name: str, name: str, path: Path, reference_encode, arch: str, X: torch.Tensor) -> tuple[dict, SAE | None]:
    row = {"format": format_name, "architecture": name, "saved_as": arch}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae = load_sae(path)
    except (ValueError, FileNotFoundError) as err:
        return {**row, "loads": False, "error": str(err)}, None
    with torch.no_grad():
        diff = float((sae.encode(X).float() - reference_encode(X).float()).abs().max())
    return {**row, "loads": True, "encode_max_abs_diff": diff}, sae


def meter(sae: SAE, X: torch.Tensor) -> dict:
    cpu = time.process_time()
    s = measure_gap(sae, X).summary()
    return {"cpu_seconds": time.process_time() - cpu, "load_avg_1min_after": os.getloadavg()[0],
            "certified": s["certified"], "gap_rel": s["gap_rel"], "certificate_max": s["certificate_max"],
            "tol_lasso": s["tol_lasso"], "l1_certificate_max": s["l1_certificate_max"], "tol_l1": s["tol_l1"],
            "seconds": s["seconds"], "not_certified_because": s["not_certified_because"]}


def table(rows: list[dict]) -> str:
    lines = ["| format | architecture | saved as | loads | max abs encode diff | meter certified | gap (rel.) | meter wall (s) | meter CPU (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        metered = "certified" in r
        cert = ("yes" if r["certified"] else "no") if metered else ("n/a" if r.get("sae_lens_reads") else "not run")
        gap = f"{r['gap_rel']:.3g}" if metered else ""
        sec = f"{r['seconds']:.1f} | {r['cpu_seconds']:.1f}" if metered else " | "
        diff = f"{r['encode_max_abs_diff']:.1e}" if "encode_max_abs_diff" in r else ""
        loads = "yes" if r["loads"] else "no: " + r.get("error", "")
        lines.append(f"| {r['format']} | {r['architecture']} | {r['saved_as']} | {loads} | {diff} | {cert} | {gap} | {sec} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="sae_formats_run.json")
    ap.add_argument("--table", default=None, help="also write the markdown table to this file")
    ap.add_argument("--n", type=int, default=256, help="activations measured")
    ap.add_argument("--steps", type=int, default=300, help="Adam steps of brief training per SAE")
    args = ap.parse_args()
    torch.set_num_threads(2)
    import sae_lens as sl

    X_train, X = data(4096, seed=0), data(args.n, seed=1)
    meta = {"command": f"python -m benchmarks.sae_formats --n {args.n} --steps {args.steps}", "n": args.n,
            "steps": args.steps, "torch": torch.__version__, "sae_lens": sl.__version__, "threads": 2,
            "machine": platform.machine(), "load_avg_1min_start": os.getloadavg()[0],
            "note": "meter wall times depend on the machine's load (see load_avg_*); CPU seconds are of all threads"}
    rows, saes = [], []

    def save() -> None:
        atomic_write_json(args.out, {"meta": meta, "rows": rows})
        if args.table:
            Path(args.table).write_text(table(rows))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for fmt, gen in (("SAELens", saelens_rows), ("dictionary_learning", dictionary_learning_rows)):
            for name, path, ref, arch in gen(X_train, root, args.steps):
                row, sae = compare(fmt, name, path, ref, arch, X)
                rows.append(row)
                saes.append(sae)
                print(json.dumps(row), flush=True)
        for act, kw in (("relu", {}), ("topk", {"k": K}), ("jumprelu", {"threshold": 0.05}), ("gated", {})):
            ours = SAE(D_IN, D_SAE, act, **kw)
            train(ours, ours.encode, ours.decode, X_train, 0.0 if act == "topk" else 3e-3, args.steps, seed=7)
            ours.save(root / f"gb_{act}")
            theirs = sl.SAE.load_from_disk(root / f"gb_{act}")
            with torch.no_grad():
                diff = float((theirs.encode(X) - ours.encode(X)).abs().max())
            rows.append({"format": "gapbound -> SAELens", "architecture": act, "saved_as": theirs.cfg.architecture(),
                         "loads": True, "sae_lens_reads": True, "encode_max_abs_diff": diff})
            print(json.dumps(rows[-1]), flush=True)
        save()
        for row, sae in zip(rows, saes):
            if sae is not None:
                row.update(meter(sae, X))
                print(json.dumps(row), flush=True)
                save()
    print(table(rows))


if __name__ == "__main__":
    main()
