"""One attention layer: the capture's attention function vs SDPA, and the alternatives it was chosen over.

    python benchmarks/capture_attention.py --lengths 2048 --repeats 3

SmolLM2-135M's shapes (9 query heads, 3 KV heads, head size 64, batch 1), random query, key and
value at T positions, plain causal attention. Variants, timed interleaved round by round (the
fastest of ``--repeats`` after a warm-up round; the machine is shared):

    sdpa                  torch's scaled_dot_product_attention (what a plain forward runs)
    capture               karma_probe's attention function: per query chunk one float32 softmax
                          gives the rows for the statistics and the layer's output (P · V)
    sdpa + capture rows   the output from SDPA, the rows from a second chunked pass without P · V
    capture compiled      the capture's chunk body under torch.compile (dynamic shapes); its
                          one-off compile time is reported separately

Every variant hands its rows to a null sink, so the reducers' own cost is not in these numbers
(capture_memory.py measures the whole capture).
"""

from __future__ import annotations

import argparse
import time


class _Null:
    def attention_rows(self, layer, probs, start, entropy=None):
        pass


def variants(T: int, chunk: int, dtype):
    import torch
    import torch.nn.functional as F

    from karma_probe.capture import attention as A

    g = torch.Generator().manual_seed(0)
    B, H, Hkv, hs = 1, 9, 3, 64
    q = torch.randn(B, H, T, hs, generator=g).to(dtype)
    k = torch.randn(B, Hkv, T, hs, generator=g).to(dtype)
    v = torch.randn(B, Hkv, T, hs, generator=g).to(dtype)

    class Module:  # what the interface passes as ``module``
        is_causal = True
        num_key_value_groups = H // Hkv

    mod = Module()
    cap = A.Capture(_Null(), {id(mod): 0}, chunk)

    def capture():
        A._ACTIVE.append(cap)
        try:
            return A.capture_attention(mod, q, k, v, None, scaling=hs ** -0.5)[0]
        finally:
            A._ACTIVE.remove(cap)

    def sdpa():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2)

    def sdpa_rows():
        out = sdpa()
        kk, qs = A._repeat_heads(k, H // Hkv), q * hs ** -0.5
        for s in range(0, T, chunk):
            e = min(s + chunk, T)
            A.attention_chunk(qs[:, :, s:e], kk[:, :, :e], None, None, s)
        return out

    compiled = torch.compile(A.attention_chunk, dynamic=True)

    def capture_compiled():
        own = A.attention_chunk
        A.attention_chunk = compiled
        try:
            return capture()
        finally:
            A.attention_chunk = own

    return {"sdpa": sdpa, "capture": capture, "sdpa + capture rows": sdpa_rows, "capture compiled": capture_compiled}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048], help="sequence lengths T (default 2048)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round (default 3)")
    ap.add_argument("--chunk", type=int, default=256, help="query rows per chunk (default 256, the capture's)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="q, k, v dtype (default float32)")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with torch.no_grad():
        for T in args.lengths:
            runs = variants(T, args.chunk, getattr(torch, args.dtype))
            if args.no_compile:
                runs.pop("capture compiled")
            ref = runs["sdpa"]()
            times = {name: [] for name in runs}
            for rnd in range(args.repeats + 1):
                for name, run in runs.items():
                    t = time.perf_counter()
                    out = run()
                    if rnd:
                        times[name].append(time.perf_counter() - t)
                    elif name != "sdpa":  # warm-up round: the first call of the compiled variant compiles
                        times.setdefault(f"{name} first call", []).append(time.perf_counter() - t)
                        err = (out.float() - ref.float()).abs().max().item()
                        assert err < (1e-4 if args.dtype == "float32" else 5e-2), f"{name}: output differs by {err}"
            best = {name: min(v) for name, v in times.items()}
            print(f"T = {T}, one SmolLM2-shaped attention layer, {args.dtype}, chunk {args.chunk}, "
                  f"{torch.get_num_threads()} thread(s)")
            for name in runs:
                print(f"  {name:<22} {best[name]:8.3f} s  {best[name] / best['sdpa']:5.2f}x sdpa")
            if "capture compiled first call" in best:
                print(f"  torch.compile warm-up (first call) {best['capture compiled first call']:.1f} s")


if __name__ == "__main__":
    main()
