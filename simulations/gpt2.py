"""The paper's language-model experiment: SAE vs MLP encoder vs LCA sparse coding at matched sparsity.

    python -m simulations.gpt2 --quick                     # minutes on a CPU: MiniLM on Python's docs
    python -m simulations.gpt2 --preset offline            # the committed offline run (~1M tokens, L0 8-64)
    python -m simulations.gpt2 --preset paper --device cuda  # GPT-2 small on OpenWebText (network + GPU)

Stages, each resumable: (1) harvest activations and tokens into a shard store
(``OUT/store`` or ``--store``; finished shards are kept); (2) for every L0
target ``k`` in ``--l0`` and every method, train (checkpoints in
``OUT/checkpoints``), evaluate NMSE, L0, dead latents and the amortisation gap
on the held-out shards, and score ``--n-latents`` live latents by
explain-then-detect; each (method, k) is written to ``OUT/parts/`` as it
finishes (``--merge-from DIR...`` adopts the parts of parallel runs of the same
configuration), and each trained SAE to ``OUT/saes/SAE-k{k}`` in SAELens's layout
(normalisation folded in: it reads raw activations); (3) write ``OUT/gpt2.json`` (per-method frontier, the comparison at
matched L0 and at matched NMSE) and the figures (``OUT/figures`` unless
``--figures-dir``). A rerun needs ``--resume`` (finished parts are reused,
more ``--l0`` values may be added) or ``--overwrite``.

Every method is trained at a sparsity target: TopK (k latents per token) with
the AuxK loss for the SAE and the MLP encoder, an adaptive LASSO weight for LCA.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gapbound.lm.harvest import HarvestConfig, config_from_sae, harvest
from gapbound.lm.models import load_tokenizer
from gapbound.lm.training import METHODS, LMConfig, mean_diff_ci, method_fields, run_method
from gapbound.utils.cli import add_common_args, positive_float, positive_int, run_cli
from gapbound.utils.experiment import fingerprint, open_experiment
from gapbound.utils.io import read_json
from simulations import render_figures

# 50,000 steps x 8192 vectors: the paper's 406M-token budget (64 contexts of 128 per step).
PAPER_TOKENS = 50_000 * 64 * 128


@dataclass(frozen=True)
class Preset:
    """A named set of harvest and training settings."""

    harvest: HarvestConfig
    train: LMConfig
    l0: tuple[int, ...]
    note: str


PRESETS: dict[str, Preset] = {
    # < 10 minutes on 2 CPU cores (target <= 300 CPU s): 65k tokens of Python's bundled docs, two L0 targets,
    # 768 latents, short training. Shards of 64 contexts make the held-out and explain splits 8k tokens each
    # (LCA's encoding of them, 15 iterations per token, was its largest cost); the meter takes 128 samples.
    "quick": Preset(
        HarvestConfig(model="minilm", layer=3, text="pydoc", context_length=128, max_tokens=65_536,
                      contexts_per_shard=64, dtype="float16", device="cpu"),
        LMConfig(expansion=2, mlp_hidden_mult=2, steps=200, batch_size=256, lr=1e-3, aux_k=64, dead_steps=20,
                 lca_iters=15, lca_steps=40, lca_batch_size=128, lca_lr=1e-3, lca_resample_every=15,
                 lca_gain=0.1, gap_samples=128, gap_iters=200, n_latents=50, eval_batch=1024),
        (8, 32), "MiniLM-L6 layer 3 on pydoc, a smoke test of the pipeline",
    ),
    # The committed offline run: ~1M tokens of the offline corpus, L0 8-64 (see docs/language_models.md for its time).
    "offline": Preset(
        HarvestConfig(model="minilm", layer=3, text="offline", context_length=128, max_tokens=1_048_576,
                      contexts_per_shard=512, dtype="float16", device="cpu"),
        LMConfig(expansion=4, mlp_hidden_mult=2, steps=1000, batch_size=512, lr=1e-3, aux_k=256, dead_steps=100,
                 mlp_dead_steps=20, lca_iters=50, lca_steps=300, lca_batch_size=256, lca_lr=1e-3, lca_resample_every=75,
                 lca_gain=0.05, gap_samples=256, gap_iters=200, n_latents=200, eval_batch=2048),
        (32, 16, 64, 8), "MiniLM-L6 layer 3 on 1M tokens of English from Python and Debian packages",
    ),
    # The paper's scale: GPT-2 small, 406M OpenWebText tokens, 16,896 latents, MLP hidden 8448 (GPU, network).
    "paper": Preset(
        HarvestConfig(model="gpt2", layer=6, text="openwebtext", context_length=128, max_tokens=PAPER_TOKENS,
                      contexts_per_shard=4096, dtype="float16", device="auto"),
        LMConfig(), (32, 16, 64, 8), "GPT-2 small layer 6 on 406M tokens of OpenWebText",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulations.gpt2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="offline", help="settings bundle (default offline)")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--model", default=None, help="hub name (gpt2), local directory, or 'minilm' (overrides the preset)")
    p.add_argument("--text", default=None, help="'openwebtext', 'offline', 'pydoc' or a text file/directory")
    p.add_argument("--layer", type=int, default=None, help="block index")
    p.add_argument("--site", default=None, help="resid_pre, resid_post, mlp_out, attn_z or a hook name (blocks.3.hook_resid_post)")
    p.add_argument("--from-sae", default=None, metavar="DIR", help="harvest what an SAELens SAE in DIR was trained on")
    p.add_argument("--context-length", type=positive_int, default=None, help="tokens per context")
    p.add_argument("--max-tokens", type=positive_int, default=None, help="tokens to harvest")
    p.add_argument("--dtype", choices=("float32", "float16"), default=None, help="on-disk activation dtype (presets: float16)")
    p.add_argument("--store", default=None, help="shard store directory (default OUT/store)")
    p.add_argument("--test-fraction", type=positive_float, default=0.07, help="share of shards held out (default 0.07)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to train")
    p.add_argument("--l0", nargs="+", type=positive_int, default=None, help="L0 targets k (default: the preset's)")
    p.add_argument("--steps", type=positive_int, default=None, help="SAE/MLP training steps")
    p.add_argument("--lca-steps", type=positive_int, default=None, help="LCA training steps")
    p.add_argument("--n-latents", type=positive_int, default=None, help="latents scored per method")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--merge-from", nargs="+", default=[], metavar="DIR",
                   help="first adopt the finished parts of other --out directories of the same configuration "
                        "(parallel processes, one per method or k)")
    p.add_argument("--carry-from", nargs="+", default=[], metavar="DIR",
                   help="adopt the finished parts of other --out directories whose configuration differs only in "
                        "training settings their method does not read (e.g. SAE and LCA parts when only mlp_* "
                        "settings changed); each records carried_from")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 on a machine shared with other jobs)")
    add_common_args(p, "results/gpt2")
    return p


def configs_from_args(args: argparse.Namespace) -> tuple[str, HarvestConfig, LMConfig, tuple[int, ...]]:
    """The preset, overridden by the command line."""
    name = "quick" if args.quick else args.preset
    preset = PRESETS[name]
    hv = config_from_sae(args.from_sae, **{k: getattr(preset.harvest, k) for k in ("max_tokens", "contexts_per_shard", "dtype")}) \
        if args.from_sae else preset.harvest
    given = {k: v for k, v in {"model": args.model, "text": args.text, "layer": args.layer, "site": args.site,
                               "context_length": args.context_length, "max_tokens": args.max_tokens, "dtype": args.dtype}.items()
             if v is not None}
    if "site" in given and str(given["site"]).startswith("blocks.") and "layer" not in given:
        given["layer"] = None
    hv = replace(hv, **given, device=args.device)
    lm = replace(preset.train, seed=args.seed, **{k: v for k, v in {
        "steps": args.steps, "lca_steps": args.lca_steps, "n_latents": args.n_latents}.items() if v is not None})
    return name, hv, lm, tuple(args.l0) if args.l0 else preset.l0


def split_shards(n_shards: int, test_fraction: float) -> dict[str, list[int]]:
    """Held-out shards at the end; autointerp explains from as many shards at the start of the training ones."""
    if n_shards < 2:
        raise ValueError(f"need at least 2 shards (training and held-out), the store has {n_shards}; "
                         "harvest more text or lower --contexts-per-shard")
    n_test = min(n_shards - 1, max(1, round(test_fraction * n_shards)))
    train = list(range(n_shards - n_test))
    return {"train": train, "explain": train[:n_test], "test": list(range(n_shards - n_test, n_shards))}


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Linear interpolation of ``ys`` at ``x`` over sorted ``xs``; None outside their range."""
    order = np.argsort(xs)
    xs, ys = np.asarray(xs, float)[order], np.asarray(ys, float)[order]
    return float(np.interp(x, xs, ys)) if len(xs) and xs[0] <= x <= xs[-1] else None


def summarise(parts: dict[str, dict], l0_match: int = 32) -> dict[str, Any]:
    """Frontier per method, the comparison at matched L0 (``k = l0_match``) and at matched NMSE.

    Matched NMSE: the target is the SAE's NMSE at ``l0_match``; each method's
    F1 and L0 are interpolated linearly (in NMSE) between its sweep points, and
    are None where the target lies outside a method's NMSE range.
    ``matched_nmse_by_reference`` repeats this with every method's NMSE at
    ``l0_match`` as the target (``matched_nmse`` is its ``"SAE"`` entry).
    """
    methods: dict[str, dict[str, dict]] = {}
    for part in parts.values():
        r = part["result"]
        methods.setdefault(part["method"], {})[str(r["k"])] = r
    frontier = {m: sorted(({"k": r["k"], "l0": r["l0"], "nmse": r["nmse"], "f1_mean": r["f1_mean"], "f1_ci": r["f1_ci"],
                            "dead_fraction": r["dead_fraction"], "gap_rel": r["gap"]["gap_rel"]}
                           for r in by_k.values()), key=lambda d: d["k"]) for m, by_k in methods.items()}
    matched_l0 = {m: by_k[str(l0_match)] for m, by_k in methods.items() if str(l0_match) in by_k}
    table = {m: {key: r[key] for key in ("l0", "nmse", "dead_latents", "dead_fraction", "f1_mean", "f1_ci",
                                         "accuracy_mean", "accuracy_ci")} | {"gap_rel": r["gap"]["gap_rel"],
                                                                             "gap_certified": r["gap"]["certified"],
                                                                             "n_scored": len(r["f1"])}
             for m, r in matched_l0.items()}
    if "SAE" in matched_l0:  # F1 difference to the SAE's, with a two-sample bootstrap interval
        for m, row in table.items():
            row["f1_minus_sae"] = row["f1_mean"] - table["SAE"]["f1_mean"]
            row["f1_minus_sae_ci"] = mean_diff_ci(matched_l0[m]["f1"], matched_l0["SAE"]["f1"])
    # Each method's NMSE at l0_match is a target; every method's F1 and L0 are read off its sweep there.
    by_reference = {ref: {"target_nmse": r["nmse"], "methods": {
        m: {"f1_mean": _interp(r["nmse"], [p["nmse"] for p in pts], [p["f1_mean"] for p in pts]),
            "l0": _interp(r["nmse"], [p["nmse"] for p in pts], [p["l0"] for p in pts])}
        for m, pts in frontier.items()}} for ref, r in matched_l0.items()}
    return {"frontier": frontier, "matched_l0": {"k": l0_match, "methods": table},
            "matched_nmse": by_reference.get("SAE", {}), "matched_nmse_by_reference": by_reference}


def format_table(summary: dict) -> str:
    lines = [f"matched L0 (k={summary['matched_l0']['k']}):",
             f"{'method':<6} {'L0':>6} {'NMSE':>7} {'dead %':>7} {'rel.gap':>8} {'F1 mean [95% CI]':>22} {'acc':>6} {'n':>4}"]
    for name, m in summary["matched_l0"]["methods"].items():
        lo, hi = m["f1_ci"]
        lines.append(f"{name:<6} {m['l0']:>6.1f} {m['nmse']:>7.3f} {100 * m['dead_fraction']:>7.1f} {m['gap_rel']:>8.3f} "
                     f"{m['f1_mean']:>7.3f} [{lo:.3f}, {hi:.3f}] {m['accuracy_mean']:>6.3f} {m['n_scored']:>4d}"
                     + (f"  F1 - SAE {m['f1_minus_sae']:+.3f} [{m['f1_minus_sae_ci'][0]:+.3f}, {m['f1_minus_sae_ci'][1]:+.3f}]"
                        if name != "SAE" and "f1_minus_sae" in m else ""))
    for ref, mn in (summary.get("matched_nmse_by_reference") or {}).items():
        lines.append(f"matched NMSE ({ref} at k={summary['matched_l0']['k']}: {mn['target_nmse']:.3f}): " + ", ".join(
            f"{m} F1 {v['f1_mean']:.3f} at L0 {v['l0']:.1f}" if v["f1_mean"] is not None else f"{m} out of range"
            for m, v in mn["methods"].items()))
    return "\n".join(lines)


def merge_parts(exp: Any, sources: Sequence[str | Path]) -> list[str]:
    """Copy into ``exp`` the parts of ``sources`` (other ``--out`` directories) it lacks; returns their keys.

    Raises
    ------
    ValueError
        A source without parts, or with a part of another configuration (fingerprint).
    """
    adopted = []
    for src in map(Path, sources):
        files = sorted((src / "parts").glob("*.json"))
        if not files:
            raise ValueError(f"--merge-from {src} holds no finished parts (no {src / 'parts'}/*.json)")
        for path in files:
            part = read_json(path)
            if not isinstance(part, dict) or part.get("fingerprint") != exp.fingerprint:
                raise ValueError(f"--merge-from: {path} was written by another configuration; "
                                 "merge only runs of the same preset and options")
            if not exp.has_part(path.stem):
                exp.write_part(path.stem, {k: v for k, v in part.items() if k != "fingerprint"})
                adopted.append(path.stem)
    return adopted


def carry_parts(exp: Any, sources: Sequence[str | Path]) -> list[str]:
    """Copy into ``exp`` the parts of ``sources`` that another configuration computed identically.

    A part is carried when the source's configuration differs from ``exp``'s only in
    training settings its method does not read (:func:`~gapbound.lm.training.method_fields`);
    it records ``carried_from`` (source, its fingerprint, the differing settings, and any
    earlier ``carried_from``). Parts this configuration already has are kept.

    Raises
    ------
    ValueError
        A source without a manifest, or differing in a setting outside ``train``.
    """
    adopted = []
    for src in map(Path, sources):
        try:
            old = read_json(src / "experiment.json")["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"--carry-from {src}: no readable experiment.json (not a finished simulations.gpt2 --out)") from None
        outside = sorted(k for k in set(old) | set(exp.config) if k != "train" and old.get(k) != exp.config.get(k))
        if outside:
            raise ValueError(f"--carry-from {src}: its run differs in {', '.join(outside)} (not only training settings); "
                             "its parts cannot be carried")
        a, b = old.get("train", {}), exp.config["train"]
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        for path in sorted((src / "parts").glob("*.json")):
            part = read_json(path)
            if not isinstance(part, dict) or part.get("fingerprint") != fingerprint(old):
                raise ValueError(f"--carry-from: {path} does not belong to the run in {src} (fingerprint); remove it")
            if exp.has_part(path.stem) or set(changed) & method_fields(part["method"]):
                continue
            carried = {"out": str(src), "fingerprint": part["fingerprint"], "differs_in": changed,
                       "why": f"{part['method']} does not read {', '.join(changed)}"}
            if part.get("carried_from"):
                carried["previously"] = part["carried_from"]
            exp.write_part(path.stem, {k: v for k, v in part.items() if k not in ("fingerprint", "carried_from")}
                           | {"carried_from": carried})
            adopted.append(path.stem)
    return adopted


def _decoder(store_meta: dict):
    """Token-id -> string for readable explanations (the store's tokenizer)."""
    return load_tokenizer(store_meta["tokenizer"]).convert_ids_to_tokens


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    name, hv_cfg, lm_cfg, ks = configs_from_args(args)
    out = Path(args.out)
    store_dir = Path(args.store) if args.store else out / "store"
    t_start = time.perf_counter()
    config = {"preset": name, "harvest": {k: v for k, v in asdict(hv_cfg).items() if k not in ("device", "batch_size")},
              "train": asdict(lm_cfg), "test_fraction": args.test_fraction}
    with open_experiment(out, "gpt2", config, resume=args.resume, overwrite=args.overwrite,
                         outputs=("gpt2.json", "saes")) as exp:
        for key in merge_parts(exp, args.merge_from):
            print(f"{key}: adopted from --merge-from", file=sys.stderr)
        for key in carry_parts(exp, args.carry_from):
            print(f"{key}: carried from --carry-from (its method reads none of the differing settings)", file=sys.stderr)
        t0 = time.perf_counter()
        store = harvest(hv_cfg, store_dir, progress=not args.quiet)
        harvest_s = time.perf_counter() - t0
        splits = split_shards(store.n_shards, args.test_fraction)
        decode = _decoder(store.meta)
        for k in ks:
            for method in args.methods:
                key = f"{method}-k{k}"
                if exp.has_part(key):
                    continue
                result = run_method(method, k, store, splits, lm_cfg, checkpoint_dir=exp.checkpoint_dir,
                                    device=args.device, progress=not args.quiet, decode=decode,
                                    export_dir=out / "saes")
                exp.write_part(key, {"method": method, "result": result})
                print(f"{key}: NMSE {result['nmse']:.3f}, L0 {result['l0']:.1f}, dead {result['dead_latents']}, "
                      f"F1 {result['f1_mean']:.3f} ({result['train_seconds']:.0f} s training, {result['eval_seconds']:.0f} s "
                      f"evaluation; CPU {result['train_cpu_seconds']:.0f} s + {result['eval_cpu_seconds']:.0f} s)", file=sys.stderr)
        summary = summarise(exp.parts(), 32 if 32 in ks else ks[0])
        wall = time.perf_counter() - t_start
        report = {"store": {"dir": str(store_dir), "layer": store.fingerprint["layer"], "site": store.fingerprint["site"],
                            "text": store.fingerprint["text"], "d_model": store.d_model, "n_contexts": store.n_contexts,
                            "n_shards": store.n_shards, "tokens": store.n_contexts * store.context_length,
                            "hook_name": store.meta.get("hook_name")},
                  "splits": splits, "harvest_seconds": harvest_s, "wall_seconds_this_invocation": wall,
                  **summary,
                  "methods": {p["method"] + "-k" + str(p["result"]["k"]): p["result"] for p in exp.parts().values()},
                  "carried_from": {key: p["carried_from"] for key, p in exp.parts().items() if p.get("carried_from")}}
        exp.write_result("gpt2.json", report)
        print(format_table(summary), file=sys.stderr)
        print(f"wall time of this invocation: {wall:.1f} s (harvest {harvest_s:.1f} s)", file=sys.stderr)
        if not args.no_figures:
            render_figures("gpt2", out / "gpt2.json", exp.figures_dir(args.figures_dir))
        exp.finish()
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
