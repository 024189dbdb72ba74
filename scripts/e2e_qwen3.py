#!/usr/bin/env python3
"""End to end: a Qwen3-0.6B-shaped model (random weights, bf16) with our kernels, the user's way.

    kernel-builder build kernels_src/activation --out /tmp/kb/activation   # and rmsnorm, rotary
    python scripts/e2e_qwen3.py --build-dir /tmp/kb --json e2e.json

What it does (on CUDA; ``--tiny`` runs a 2-layer model on the CPU as a smoke test):

1. Builds ``Qwen3ForCausalLM(Qwen3Config(<0.6B sizes>))`` with random weights in bf16, sdpa attention.
2. Replaces its RMSNorm (``"RMSNorm"``: input, post-attention, q_norm, k_norm and the final norm), the rotary
   embedding (``"rotary_pos_emb"``) and the MLP activation (``"SiLU"``) with our layers, through
   ``kernels.use_kernel_mapping`` + ``kernels.kernelize`` (``LocalLayerRepository`` over the builds), and
   through transformers' own ``model.set_use_kernels(True, KernelConfig(..., use_local_kernel=True))``;
   anything that fails is recorded with its error. ``logging.DEBUG`` is on; which layer forward each module
   now runs, and which of our CUDA kernels one forward launched (torch profiler), are logged.
3. Logits of each variant vs eager bf16, with eager float32 as the yardstick (the bf16 model's own error).
4. Op shares of an eager prefill (CUDA events around every RMSNorm / rotary / activation call, and the
   profiler's top kernels).
5. Prefill of batch x seq tokens (default 8 x 2048; ``logits_to_keep=1`` as generate's prefill): eager,
   eager with every RMSNorm swapped for ``torch.nn.functional.rms_norm``, ours (RMSNorm; + rotary;
   + SiLU), transformers' KernelConfig path, and the fused prologue (our RMSNorm and SiLU, with
   Qwen3Attention's q_norm + k_norm + rotary as one ``qk_norm_rotary`` through kernels'
   ``replace_kernel_forward_from_hub``: transformers has no hook spanning the three).
6. Greedy decode at batch 1 (tokens/s), eager and ours, as plain launches (DynamicCache) and replaying one
   CUDA graph per token (StaticCache), with the greedy tokens compared between the two.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

log = logging.getLogger("e2e_qwen3")

QWEN3_06B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                 rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu")
TINY = dict(QWEN3_06B, vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=64)

LAYERS = {  # transformers' hook name -> (our kernel project, our layer)
    "RMSNorm": ("rmsnorm", "RMSNorm"),
    "rotary_pos_emb": ("rotary", "ApplyRotaryPosEmb"),
    "SiLU": ("activation", "Silu"),
    # Not a transformers hook: registered on Qwen3Attention by kernelize_fused (see there).
    "Qwen3Attention": ("rotary", "Qwen3QKNormRotaryAttention"),
}
FUSED = "fused prologue: RMSNorm + qk_norm_rotary + SiLU"
VARIANTS = {  # name -> hooks replaced
    "ours: RMSNorm": ("RMSNorm",),
    "ours: RMSNorm + rotary": ("RMSNorm", "rotary_pos_emb"),
    "ours: RMSNorm + rotary + SiLU": ("RMSNorm", "rotary_pos_emb", "SiLU"),
}


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def make_model(cfg_kwargs, device, dtype):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(**cfg_kwargs)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(cfg)
    # Random init is N(0, 0.02); make RMSNorm weights non-trivial (1 +- 0.1) so the kernels' weight path counts.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(1.0, 0.1)
    return model.to(dtype).eval()


def _rotary_module():
    """transformers' apply_rotary_pos_emb: ONE nn.Module instance per process (its decorator turns the
    function into it), called by every Qwen3Attention of every model. kernelize replaces its forward for the
    whole process, and a deep-copied model's `_kernel_funcs` holds a copy that nothing calls; so each variant
    here records the forward it wants and `activate` installs it before the variant runs."""
    from transformers.models.qwen3 import modeling_qwen3

    rot = getattr(modeling_qwen3, "apply_rotary_pos_emb", None)
    return rot if isinstance(rot, torch.nn.Module) else None


def take_rotary_forward():
    """The forward kernelize installed on the shared rotary module (None: the original); resets it."""
    rot = _rotary_module()
    if rot is None:
        return None
    return rot.__dict__.pop("forward", None)


def activate(variant):
    rot = _rotary_module()
    if rot is not None:
        rot.__dict__.pop("forward", None)
        if variant["rotary_forward"] is not None:
            rot.forward = variant["rotary_forward"]
    return variant["model"]


def kernelize_ours(model, build: dict[str, Path], hooks, device):
    from kernels import LocalLayerRepository, Mode, kernelize, use_kernel_mapping

    mapping = {h: {device: LocalLayerRepository(repo_path=build[LAYERS[h][0]], layer_name=LAYERS[h][1])}
               for h in hooks}
    with use_kernel_mapping(mapping, inherit_mapping=False):
        kernelize(model, mode=Mode.INFERENCE, device=device)
        rot = _rotary_module()
        if "rotary_pos_emb" in hooks and rot is not None:
            kernelize(rot, mode=Mode.INFERENCE, device=device)
    return {"model": model, "rotary_forward": take_rotary_forward()}


def kernelize_fused(model, build: dict[str, Path], device):
    """Our RMSNorm and SiLU, and Qwen3's attention prologue (q_norm, k_norm, rotary) as one kernel.

    transformers has no hook that spans q_norm, k_norm and the rotation (they are two "RMSNorm" modules and
    the "rotary_pos_emb" function), so Qwen3Attention is made kernelizable with kernels' hook for
    third-party layers, ``replace_kernel_forward_from_hub``, and its forward is replaced by our
    ``Qwen3QKNormRotaryAttention`` (transformers' forward with the prologue fused). The class attributes are
    removed again once this model's modules hold the new forward, so no other variant sees the hook."""
    from kernels import replace_kernel_forward_from_hub
    from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention

    replace_kernel_forward_from_hub(Qwen3Attention, "Qwen3Attention")
    try:
        return kernelize_ours(model, build, ("RMSNorm", "Qwen3Attention", "SiLU"), device)
    finally:
        for attr in ("kernel_layer_name", "kernel_condition"):
            if attr in Qwen3Attention.__dict__:
                delattr(Qwen3Attention, attr)


def kernel_config_ours(model, build: dict[str, Path], hooks):
    """transformers' path. `model` must be a fresh model (not a deep copy) for its rotary hook to count."""
    from transformers import KernelConfig

    kc = KernelConfig({h: f"{build[LAYERS[h][0]].resolve()}:{LAYERS[h][1]}" for h in hooks}, use_local_kernel=True)
    model.set_use_kernels(True, kc)
    return {"model": model, "rotary_forward": take_rotary_forward()}


def swap_f_rms_norm(model):
    """Every Qwen3RMSNorm runs torch.nn.functional.rms_norm (the issue's comparison point)."""
    for m in model.modules():
        if type(m).__name__.endswith("RMSNorm"):
            def fwd(self, x):
                return F.rms_norm(x, (x.shape[-1],), self.weight, self.variance_epsilon)
            m.forward = types.MethodType(fwd, m)
    return model


def _fn_name(fwd) -> str:
    fn = getattr(fwd, "__func__", fwd)
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def describe_forwards(variant) -> dict[str, str]:
    """Which forward each hooked layer runs in this variant (module.qualname), logged at DEBUG."""
    model = activate(variant)
    seen = {}
    for hook, cls in (("RMSNorm", "Qwen3RMSNorm"), ("SiLU", "SiLUActivation"), ("Qwen3Attention", "Qwen3Attention")):
        m = next(m for m in model.modules() if type(m).__name__ == cls)
        seen[hook] = _fn_name(m.forward)
    rot = _rotary_module()
    if rot is not None:
        seen["rotary_pos_emb"] = _fn_name(rot.forward)
    for hook, name in seen.items():
        log.debug("layer %s -> forward %s", hook, name)
    return seen


def kernels_launched(variant, ids, device) -> dict[str, int]:
    """Our CUDA kernels one forward launched (profiler), logged at DEBUG."""
    if device != "cuda":
        return {}
    model = activate(variant)
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        model(ids, logits_to_keep=1)
        sync(device)
    import re

    ours = {}
    for e in prof.key_averages():
        if any(k in e.key for k in ("kb_rmsnorm", "kb_rotary", "kb_activation")):
            m = re.search(r"(kb_\w+)::.*?(\w+_kernel)", e.key)
            short = f"{m.group(1)}::{m.group(2)}" if m else e.key[:80]
            ours[short] = ours.get(short, 0) + e.count
    for k, n in sorted(ours.items()):
        log.debug("kernel called: %s x%d", k, n)
    return ours


def logits_check(variants: dict, ref32, ids) -> dict:
    out = {}
    r = ref32.float()
    for name, v in variants.items():
        with torch.no_grad():
            lg = activate(v)(ids).logits.float()
        rel = ((lg - r).norm() / r.norm()).item()
        top1 = (lg.argmax(-1) == r.argmax(-1)).float().mean().item()
        out[name] = {"rel_err_vs_fp32": round(rel, 5), "top1_agree_vs_fp32": round(top1, 4)}
        log.info("logits %-34s rel err vs fp32 %.5f, top-1 agreement %.4f", name, rel, top1)
    return out


def time_fn(fn, device, warmup=3, iters=10) -> float:
    """Median ms (CUDA events on CUDA)."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        sync(device)
        ts = []
        for _ in range(iters):
            if device == "cuda":
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def op_shares(variant, ids, device) -> dict:
    """GPU time of RMSNorm / rotary / SiLU calls in one prefill (CUDA events around each call) + top kernels."""
    if device != "cuda":
        return {}
    model = activate(variant)
    groups = {"RMSNorm": [m for m in model.modules() if type(m).__name__ == "Qwen3RMSNorm"],
              "SiLU": [m for m in model.modules() if type(m).__name__ == "SiLUActivation"]}
    rot = _rotary_module()
    if rot is not None:
        groups["rotary_pos_emb"] = [rot]
    events = {g: [] for g in groups}
    handles = []
    for g, mods in groups.items():
        for m in mods:
            def pre(mod, args, kwargs=None, g=g):
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                events[g].append([e, None])
            def post(mod, args, out, g=g):
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                events[g][-1][1] = e
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    with torch.no_grad():
        model(ids, logits_to_keep=1)  # warm
        for g in events:
            events[g].clear()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        model(ids, logits_to_keep=1)
        b.record()
        torch.cuda.synchronize()
    for h in handles:
        h.remove()
    total = a.elapsed_time(b)
    res = {"total_ms": round(total, 2)}
    for g, evs in events.items():
        ms = sum(s.elapsed_time(e) for s, e in evs if e is not None)
        res[g] = {"ms": round(ms, 2), "share": round(ms / total, 4), "calls": len(evs)}
    # the profiler's view: top kernels by GPU time
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
        model(ids, logits_to_keep=1)
        sync(device)
    evs = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
    ktotal = sum(e.device_time_total for e in evs)
    top = sorted(evs, key=lambda e: -e.device_time_total)[:15]
    res["profiler_kernel_ms"] = round(ktotal / 1e3, 2)
    res["top_kernels"] = [{"name": e.key[:90], "ms": round(e.device_time_total / 1e3, 2), "calls": e.count,
                           "share": round(e.device_time_total / ktotal, 4)} for e in top]
    return res


def greedy(model, prompt, n_new, device):
    """Greedy decode with the default (dynamic) cache, plain launches. Returns (tokens, ms per token)."""
    with torch.no_grad():
        out = model(prompt, use_cache=True)  # warm-up: first-call costs stay out of the timing
        past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(8):
            tok = model(tok, past_key_values=past, use_cache=True).logits[:, -1:].argmax(-1)
        sync(device)
        out = model(prompt, use_cache=True)
        past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        toks = [tok]
        sync(device)
        t0 = time.perf_counter()
        for _ in range(n_new - 1):
            out = model(tok, past_key_values=past, use_cache=True)
            tok = out.logits[:, -1:].argmax(-1)
            toks.append(tok)
        sync(device)
        dt = time.perf_counter() - t0
    return torch.cat(toks, 1), dt * 1e3 / (n_new - 1)


def greedy_graph(model, prompt, n_new, device):
    """Greedy decode with a StaticCache, one CUDA graph per decode step (captured once, replayed)."""
    from transformers import StaticCache

    P = prompt.shape[1]
    cache = StaticCache(config=model.config, max_cache_len=P + n_new + 4)
    tok_buf = torch.zeros(1, 1, dtype=torch.long, device=device)
    pos_buf = torch.zeros(1, 1, dtype=torch.long, device=device)

    def step():
        out = model(tok_buf, position_ids=pos_buf, past_key_values=cache, use_cache=True)
        return out.logits[:, -1:].argmax(-1)

    def prefill():
        cache.reset()
        out = model(prompt, past_key_values=cache, use_cache=True)
        tok_buf.copy_(out.logits[:, -1:].argmax(-1))
        pos_buf.fill_(P)

    with torch.no_grad():
        prefill()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(s)
        prefill()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            nxt = step()
        prefill()  # the capture ran no work: start again from the prompt
        toks = [tok_buf.clone()]
        sync(device)
        t0 = time.perf_counter()
        for _ in range(n_new - 1):
            graph.replay()
            tok_buf.copy_(nxt)
            pos_buf.add_(1)
            toks.append(tok_buf.clone())
        sync(device)
        dt = time.perf_counter() - t0
    return torch.cat(toks, 1), dt * 1e3 / (n_new - 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", required=True, type=Path, help="directory with activation/, rmsnorm/, rotary/ builds")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--decode-prompt", type=int, default=128)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--tiny", action="store_true", help="2-layer model on the CPU: a smoke test of the script")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    for noisy in ("urllib3", "filelock", "matplotlib", "torch._dynamo", "torch._inductor", "fsspec", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import transformers

    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    cfg = TINY if device == "cpu" else QWEN3_06B
    if device == "cpu":
        args.batch, args.seq, args.decode_prompt, args.decode_tokens = 2, 64, 16, 8
    build = {k: (args.build_dir / k) for k in ("activation", "rmsnorm", "rotary")}
    res = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
           "transformers": transformers.__version__, "config": cfg, "batch": args.batch, "seq": args.seq}
    log.info("device %s, torch %s, transformers %s", res["device"], torch.__version__, transformers.__version__)

    base = make_model(cfg, device, torch.bfloat16)
    take_rotary_forward()
    variants = {"eager": {"model": base, "rotary_forward": None},
                "eager + F.rms_norm": {"model": swap_f_rms_norm(copy.deepcopy(base)), "rotary_forward": None}}
    res["errors"] = {}
    for name, hooks in VARIANTS.items():
        try:
            variants[name] = kernelize_ours(copy.deepcopy(base), build, hooks, device)
            log.info("%s: kernelized via kernels.use_kernel_mapping + kernelize", name)
        except Exception as e:  # record, go on
            res["errors"][name] = f"{type(e).__name__}: {e}"
            log.error("%s failed: %s", name, res["errors"][name])
    tf_name = "transformers KernelConfig: RMSNorm + rotary + SiLU"
    try:
        variants[tf_name] = kernel_config_ours(make_model(cfg, device, torch.bfloat16), build,
                                               ("RMSNorm", "rotary_pos_emb", "SiLU"))
        log.info("%s: set_use_kernels(True, KernelConfig(use_local_kernel=True))", tf_name)
    except Exception as e:
        take_rotary_forward()
        res["errors"][tf_name] = f"{type(e).__name__}: {e}"
        log.error("%s failed: %s", tf_name, res["errors"][tf_name])

    try:
        variants[FUSED] = kernelize_fused(copy.deepcopy(base), build, device)
        attn = next(m for m in variants[FUSED]["model"].modules() if type(m).__name__ == "Qwen3Attention")
        log.info("%s: kernelized (Qwen3Attention -> %s)", FUSED, _fn_name(attn.forward))
    except Exception as e:
        res["errors"][FUSED] = f"{type(e).__name__}: {e}"
        log.error("%s failed: %s", FUSED, res["errors"][FUSED])

    torch.manual_seed(1)
    ids = torch.randint(0, cfg["vocab_size"], (args.batch, args.seq), device=device)
    check_ids = ids[:2, :256]

    res["forwards"] = {}
    res["kernels_called"] = {}
    for name, v in variants.items():
        log.debug("== %s", name)
        res["forwards"][name] = describe_forwards(v)
        res["kernels_called"][name] = kernels_launched(v, check_ids, device)

    ref32 = copy.deepcopy(base).float()
    with torch.no_grad():
        ref_logits = activate({"model": ref32, "rotary_forward": None})(check_ids).logits
    del ref32
    res["logits"] = logits_check(variants, ref_logits, check_ids)
    with torch.no_grad():
        e = activate(variants["eager"])(check_ids).logits.float()
        for name, v in variants.items():
            d = (activate(v)(check_ids).logits.float() - e)
            res["logits"][name]["rel_err_vs_eager_bf16"] = round((d.norm() / e.norm()).item(), 5)
    del ref_logits

    res["op_shares_eager"] = op_shares(variants["eager"], ids, device)
    last = [n for n in variants if n.startswith("ours")]  # the fused variant is timed in prefill only
    if last:
        res["op_shares_ours"] = op_shares(variants[last[-1]], ids, device)
    for k in ("op_shares_eager", "op_shares_ours"):
        sh = res.get(k) or {}
        if sh:
            log.info("%s: total %.2f ms; %s", k, sh["total_ms"],
                     ", ".join(f"{g} {v['ms']} ms ({100 * v['share']:.1f}%, {v['calls']} calls)"
                               for g, v in sh.items() if isinstance(v, dict)))
            for t in sh["top_kernels"][:8]:
                log.info("   %6.2f ms %5.1f%% x%-4d %s", t["ms"], 100 * t["share"], t["calls"], t["name"])

    res["prefill_ms"] = {}
    for name, v in variants.items():
        m = activate(v)
        ms = time_fn(lambda m=m: m(ids, logits_to_keep=1), device)
        res["prefill_ms"][name] = round(ms, 2)
    e_ms = res["prefill_ms"]["eager"]
    f_ms = res["prefill_ms"]["eager + F.rms_norm"]
    log.info("prefill %dx%d (logits_to_keep=1):", args.batch, args.seq)
    for name, ms in res["prefill_ms"].items():
        log.info("  %-50s %8.2f ms  %8.0f tok/s  %.2fx eager  %.2fx F.rms_norm swap", name, ms,
                 args.batch * args.seq / ms * 1e3, e_ms / ms, f_ms / ms)

    res["decode"] = {}
    prompt = ids[:1, :args.decode_prompt]
    for name in ("eager", last[-1] if last else None):
        if name is None:
            continue
        m = activate(variants[name])
        d = {}
        toks, ms = greedy(m, prompt, args.decode_tokens, device)
        d["plain_ms_per_token"], d["plain_tok_s"] = round(ms, 3), round(1e3 / ms, 1)
        if device == "cuda":
            try:
                gtoks, gms = greedy_graph(m, prompt, args.decode_tokens, device)
                d["graph_ms_per_token"], d["graph_tok_s"] = round(gms, 3), round(1e3 / gms, 1)
                d["graph_tokens_match_plain"] = bool((gtoks == toks).all().item())
                d["graph_tokens_agree"] = round((gtoks == toks).float().mean().item(), 3)
            except Exception as e:
                d["graph_error"] = f"{type(e).__name__}: {e}"[:400]
                log.error("CUDA graph decode (%s) failed: %s", name, d["graph_error"])
            from torch.profiler import ProfilerActivity, profile
            with torch.no_grad():
                out = m(prompt, use_cache=True)
                past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    m(tok, past_key_values=past, use_cache=True)
                    sync(device)
            evs = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
            d["kernels_per_token"] = sum(e.count for e in evs)
            d["gpu_kernel_ms_per_token"] = round(sum(e.device_time_total for e in evs) / 1e3, 3)
        res["decode"][name] = d
        log.info("decode batch 1, %s: %s", name, d)

    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
        log.info("wrote %s", args.json)
    bad = [n for n, v in res["logits"].items() if v["rel_err_vs_fp32"] > 2 * res["logits"]["eager"]["rel_err_vs_fp32"] + 1e-3]
    if bad:
        log.error("logits off (more than twice eager bf16's error vs fp32): %s", bad)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
