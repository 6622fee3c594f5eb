"""Peak memory and time of the streaming capture vs TransformerLens and plain forwards (SmolLM2-135M).

Targets (issue 4), at T = 2048, batch 1: the capture's peak memory ≤ 1.3× a plain forward's and
≤ ¼ of ``run_with_cache``'s; its time ≤ 1.5× a plain eager forward.

    python benchmarks/capture_memory.py                 # T = 512 and 2048, 2 timed runs each
    python benchmarks/capture_memory.py --lengths 512 --repeats 1
    python benchmarks/capture_memory.py --lengths 2048 8192 --repeats 1 --dtype bfloat16 \
        --configs "plain sdpa" "plain sdpa body" capture      # issue 24's table (time/body)

Memory: every configuration runs in a fresh subprocess, so one configuration's allocations
cannot hide in another's peak. The child loads the model, runs an 8-token warm-up (the first
forward faults in weight pages and sets up kernels), resets its peak-RSS counter
(``/proc/self/clear_refs`` = 5), runs the configuration once at T and reports ``VmHWM``: "peak"
(the whole process, weights included) and "Δpeak" (peak minus the resident set just before the
run: the configuration's own transient memory).

Time: one more subprocess holds every configuration and runs them interleaved, round by round
(the machine is shared, so load that comes and goes hits all of them alike); the time is the
fastest of ``--repeats`` rounds after a warm-up round. Configurations:

    plain sdpa       LlamaForCausalLM forward, SDPA (what a user runs; includes the logits)
    plain sdpa body  the decoder only (model.model), SDPA: what the capture itself runs
    plain eager      LlamaForCausalLM forward, eager attention
    capture          karma_probe torch backend: the decoder with its attention switched to the
                     capture's attention function (one float32 softmax per query chunk gives the
                     layer's output and the exact attention statistics), residual massive-
                     activation ratios and marker hidden states (no full maps)
    tl patterns      TransformerBridge.run_with_cache(names_filter=*hook_pattern) (eager)
    tl everything    TransformerBridge.run_with_cache() with every hook cached (eager)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

DTYPE = "float32"  # --dtype: set once in main, passed on to every subprocess
CONFIGS = ("plain sdpa", "plain sdpa body", "plain eager", "capture", "tl patterns", "tl everything")


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmHWM = peak resident set, VmRSS = current)."""
    text = open("/proc/self/status").read()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) * 1024


def _tokens(tok, T: int):
    import torch

    from karma_probe.capture.probes import general_passages

    ids = tok(" ".join(general_passages()), add_special_tokens=False)["input_ids"]
    ids = (ids * (T // len(ids) + 1))[:T]  # repeat the passages up to T tokens
    return torch.tensor([ids])


def runners(T: int, configs, models: dict) -> dict:
    """config → a zero-argument function that runs it once on a T-token batch of 1."""
    import torch

    sdpa, eager, tok = models["sdpa"], models["eager"], models["tok"]
    ids = _tokens(tok, T)
    mask = torch.ones_like(ids)
    c = (sdpa or eager).config
    out = {}
    for config in configs:
        if config.startswith("tl"):
            bridge = models["bridge"]()
            names = (lambda n: n.endswith("hook_pattern")) if config == "tl patterns" else None
            out[config] = lambda b=bridge, f=names: len(b.run_with_cache(ids, names_filter=f)[1])
        elif config == "capture":
            from karma_probe.capture.backends import TorchBackend
            from karma_probe.capture.session import ProbeCollector

            backend = TorchBackend(sdpa)

            def run(backend=backend):
                sink = ProbeCollector(c.num_hidden_layers, c.num_attention_heads, c.hidden_size, T, keep_marker=True)
                sink.begin_batch(mask.sum(1), [None])
                backend.run(ids, mask, sink)
                sink.end_batch()
                return sink.state("history")
            out[config] = run
        elif config == "plain sdpa body":
            out[config] = lambda: sdpa.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        else:
            m = eager if config == "plain eager" else sdpa
            out[config] = lambda m=m: m(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return out


def load_models(configs, *, copy_for_bridge: bool = True) -> dict:
    """Only what the configurations need: an SDPA model, an eager model, a TL bridge.

    The bridge rewires the model it gets; with ``copy_for_bridge`` it gets a copy, so the plain
    eager model stays plain (the memory children, which run one configuration, skip the copy)."""
    import copy
    from functools import lru_cache

    import torch

    from karma_probe.model.backbones import load_backbone

    need_sdpa = any(c in ("plain sdpa", "plain sdpa body", "capture") for c in configs)
    need_eager = any(c == "plain eager" or c.startswith("tl") for c in configs)
    sdpa, tok = load_backbone("smollm2-135m") if need_sdpa else (None, None)
    eager, tok = load_backbone("smollm2-135m", attn_implementation="eager") if need_eager else (None, tok)
    dtype = getattr(torch, DTYPE)
    sdpa, eager = (m.to(dtype) if m is not None else None for m in (sdpa, eager))

    @lru_cache(maxsize=1)
    def bridge():
        from transformer_lens.model_bridge import TransformerBridge

        hf = copy.deepcopy(eager) if copy_for_bridge else eager
        return TransformerBridge.boot_transformers(tok.name_or_path, hf_model=hf, tokenizer=tok)

    return {"sdpa": sdpa, "eager": eager, "tok": tok, "bridge": bridge}


def child(config: str, T: int) -> dict:
    """Peak memory of one configuration in a fresh process."""
    import torch

    models = load_models([config], copy_for_bridge=False)
    with torch.no_grad():
        # An 8-token warm-up faults in the weight pages and sets up kernels (a one-off cost that
        # is not the configuration's own) without leaving T-sized buffers behind.
        runners(8, [config], models)[config]()
        run = runners(T, [config], models)[config]
        loaded = _status("VmRSS")
        open("/proc/self/clear_refs", "w").write("5")  # the peak counter starts here
        t = time.perf_counter()
        run()
        elapsed = time.perf_counter() - t
    peak = _status("VmHWM")
    return {"config": config, "T": T, "peak": peak, "loaded": loaded, "delta": peak - loaded, "single_time": elapsed,
            "threads": torch.get_num_threads()}


def timing(lengths, configs, repeats: int, short_warmup: bool = False) -> list[dict]:
    """Time of every configuration, interleaved round by round in one process (the machine is
    shared: load that comes and goes then hits every configuration alike); the fastest of
    ``repeats`` rounds after one warm-up round (``short_warmup``: at 8 tokens, as the memory
    children warm up, instead of at T)."""
    import torch

    models = load_models(configs)
    out = []
    with torch.no_grad():
        for T in lengths:
            runs = runners(T, configs, models)
            times = {c: [] for c in configs}
            if short_warmup:
                for run in runners(8, configs, models).values():
                    run()
            for rnd in range(int(short_warmup), repeats + 1):
                for config, run in runs.items():
                    t = time.perf_counter()
                    run()
                    if rnd:
                        times[config].append(time.perf_counter() - t)
            out += [{"config": c, "T": T, "time": min(v), "times": v} for c, v in times.items()]
    return out


def _subprocess(args: list[str]):
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("{", "["))]
    if r.returncode != 0 or not lines:
        return "killed (out of memory?)" if r.returncode < 0 else (r.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(lines[-1])


def measure(config: str, T: int, threads: int) -> dict:
    got = _subprocess(["--child", config, "--lengths", str(T), "--threads", str(threads), "--dtype", DTYPE])
    return got if isinstance(got, dict) else {"config": config, "T": T, "error": got}


def table(rows: list[dict]) -> str:
    gib = 1024 ** 3
    out = []
    for T in sorted({r["T"] for r in rows}):
        at = {r["config"]: r for r in rows if r["T"] == T}
        ref_mem, ref_eager, ref_body = at.get("plain sdpa", {}), at.get("plain eager", {}), at.get("plain sdpa body", {})
        if "peak" not in ref_mem:  # measured without "plain sdpa": memory ratios against the decoder-only forward
            ref_mem = ref_body
        threads = next((r["threads"] for r in at.values() if "threads" in r), "?")
        ref = "sdpa" if ref_mem is at.get("plain sdpa") else "body"
        out.append(f"T = {T}, batch 1, SmolLM2-135M {DTYPE}, {threads} threads")
        out.append(f"{'configuration':<17} {'peak GiB':>9} {'Δpeak GiB':>10} {'time s':>8} "
                   f"{'peak/' + ref:>10} {'Δ/' + ref + ' Δ':>9} {'time/eager':>11} {'time/body':>10}")
        for name in CONFIGS:
            r = at.get(name)
            if r is None:
                continue
            if "error" in r:
                out.append(f"{name:<17} {r['error']}")
                continue
            pm = r["peak"] / ref_mem["peak"] if "peak" in ref_mem else float("nan")
            dm = r["delta"] / ref_mem["delta"] if "delta" in ref_mem else float("nan")
            tt = r["time"] / ref_eager["time"] if "time" in ref_eager else float("nan")
            tb = r["time"] / ref_body["time"] if "time" in ref_body else float("nan")
            out.append(f"{name:<17} {r['peak'] / gib:>9.2f} {r['delta'] / gib:>10.2f} {r['time']:>8.2f} "
                       f"{pm:>10.2f} {dm:>9.2f} {tt:>11.2f} {tb:>10.2f}")
        cap = at.get("capture", {})
        if "peak" in cap:
            for other in ("tl everything", "tl patterns"):
                o = at.get(other, {})
                if "peak" in o:
                    out.append(f"capture / {other}: peak {cap['peak'] / o['peak']:.2f}, Δpeak {cap['delta'] / o['delta']:.2f}, "
                               f"time {cap['time'] / o['time']:.2f}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--repeats", type=int, default=2, help="timed rounds after one warm-up round")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared 2-core machine two OpenMP threads that wait "
                         "for each other's core run up to 40x slower, which would swamp every ratio)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights and activations of every configuration (default float32)")
    ap.add_argument("--short-warmup", action="store_true",
                    help="warm the timed configurations up at 8 tokens instead of one whole round at T "
                         "(a round at T = 8192 costs minutes on one thread)")
    ap.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    ap.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    global DTYPE
    DTYPE = args.dtype
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args.lengths[0])))
        return
    if args.timing:
        print(json.dumps(timing(args.lengths, args.configs, args.repeats, args.short_warmup)))
        return
    rows = []
    for T in args.lengths:
        for config in args.configs:
            rows.append(measure(config, T, args.threads))
            print(f"  memory: {config} at T={T}", file=sys.stderr, flush=True)
    times = _subprocess(["--timing", "--repeats", str(args.repeats), "--threads", str(args.threads), "--dtype", DTYPE,
                         *(["--short-warmup"] if args.short_warmup else []),
                         "--lengths", *map(str, args.lengths),
                         "--configs", *args.configs])
    if isinstance(times, str):
        raise SystemExit(f"timing run failed: {times}")
    by_key = {(t["config"], t["T"]): t for t in times}
    for r in rows:
        r.update({k: v for k, v in by_key.get((r["config"], r["T"]), {}).items() if k in ("time", "times")})
    print(table(rows))


if __name__ == "__main__":
    main()
