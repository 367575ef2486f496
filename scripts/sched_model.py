#!/usr/bin/env python3
"""sched_model - a list-scheduling model of an lmpress cluster job, fed with task times
measured by lmpress on this machine, scaled to Llama-2-70B's shapes and GPU workers.

  scripts/sched_model.py measure RUN_DIR [--ft-log LOG --ft-tokens N] [--out bench/sched_inputs.txt]
      reads a bench/cluster_scaling.sh --out directory (the 1x1 and 1x2 layouts) and writes the
      measured inputs: per-linear quantization seconds by shape and thread count, calibration
      seconds per token per block, commit seconds per task, dispatch bytes and seconds; plus
      block fine-tuning seconds per token from an `lmpress compress --finetune` log.
  scripts/sched_model.py validate RUN_DIR [--inputs bench/sched_inputs.txt]
      predicts the measured SmolLM2 layouts of RUN_DIR (same blocks, same calibration size)
      and prints predicted vs measured quant-phase wall times and speedups.
  scripts/sched_model.py predict [--inputs ...] [--gpu a100-tf32|a100-fp32|h100-tf32|h100-fp32]
      [--workers 1,8,32,64] [--gbps 100] [--latency-us 10] [--tokens 2048x4096] ...
      Llama-2-70B: independent mode (coordinator calibrates / workers calibrate token shards),
      sequential mode (row shards per layer, a reduction per optimisation step), wall time and
      scaling efficiency T(1) / (P T(P)).

Only the Python standard library; rerunnable by anyone. Every model assumption is printed with
the results (see docs/results-cluster.md for the discussion).
"""
import argparse
import glob
import heapq
import math
import os
import re
import sys

# ---------------------------------------------------------------------------------------------
# shapes

SMOL = dict(name="SmolLM2-135M", n_layers=30, dim=576, hidden=1536, n_heads=9, n_kv=3)
L70B = dict(name="Llama-2-70B", n_layers=80, dim=8192, hidden=28672, n_heads=64, n_kv=8)
L7B = dict(name="Llama-2-7B", n_layers=32, dim=4096, hidden=11008, n_heads=32, n_kv=32)
MODELS = {"70b": L70B, "7b": L7B}
ORDER = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# which Gram matrix (input) each linear reads: q/k/v share one, gate/up share one
INPUT = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "o_proj": "o",
         "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "down"}


def linears(m):
    d, h = m["dim"], m["hidden"]
    kv = d // m["n_heads"] * m["n_kv"]
    return {"q_proj": (d, d), "k_proj": (kv, d), "v_proj": (kv, d), "o_proj": (d, d),
            "gate_proj": (h, d), "up_proj": (h, d), "down_proj": (d, h)}


def input_width(m):
    return {"attn": m["dim"], "o": m["dim"], "mlp": m["dim"], "down": m["hidden"]}


def block_params(m):
    return sum(o * i for o, i in linears(m).values())


def calib_flops_per_token(m, ctx):
    """Forward of one block (2 flops per weight, causal attention at mean length ctx/2) plus
    the X^T X accumulation of its 4 distinct inputs (2 n_in^2 per token each)."""
    attn = 2 * 2 * m["dim"] * (ctx / 2)
    gram = sum(2 * n * n for n in input_width(m).values())
    return 2 * block_params(m) + attn + gram


def ft_flops_per_token(m, ctx):
    """Block fine-tuning: forward + backward, about 3x the forward (6 flops per weight)."""
    return 3 * (2 * block_params(m) + 2 * 2 * m["dim"] * (ctx / 2))


GPUS = {  # nominal dense rates, TFLOP/s (vendor data sheets, SXM parts); "cpu": workers like
    # the measured CPU (the measured times unscaled)
    "a100-fp32": 19.5, "a100-tf32": 156.0, "h100-fp32": 67.0, "h100-tf32": 495.0, "cpu": None}

# ---------------------------------------------------------------------------------------------
# inputs file: "key value... # comment" lines


def read_inputs(path, extra=None):
    d = {"quant": []}
    for p in [path] + ([extra] if extra else []):
        read_into(p, d)
    return d


def read_into(path, d):
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            k, *v = line.split()
            if k == "commit":  # commit N_OUT N_IN SECONDS COUNT
                d.setdefault("commits", []).append((int(v[0]), int(v[1]), float(v[2]), int(v[3])))
            elif k == "quant":   # quant THREADS SCHEME N_OUT N_IN SECONDS COUNT
                d["quant"].append((int(v[0]), v[1], int(v[2]), int(v[3]), float(v[4]), int(v[5])))
            else:
                d[k] = float(v[0]) if re.fullmatch(r"[-+0-9.eE]+", v[0]) else v[0]


def fit_quant(inp, threads):
    """t(n_out, n_in) = a n_out n_in + b n_out n_in^2, least squares (weighted by count) over
    the measured shapes at this thread count; a, b clipped at >= 0 (then refit the other)."""
    rows = [(o, i, s, c) for t, _, o, i, s, c in inp["quant"] if t == threads]
    if not rows:
        raise SystemExit(f"sched_model: no quantization times at {threads} thread(s) in the inputs")
    def lsq(cols):
        # normal equations for 1 or 2 columns
        if len(cols) == 1:
            f = cols[0]
            num = sum(c * f(o, i) * s for o, i, s, c in rows)
            den = sum(c * f(o, i) ** 2 for o, i, s, c in rows)
            return [num / den]
        f, g = cols
        sff = sum(c * f(o, i) ** 2 for o, i, s, c in rows)
        sgg = sum(c * g(o, i) ** 2 for o, i, s, c in rows)
        sfg = sum(c * f(o, i) * g(o, i) for o, i, s, c in rows)
        sfs = sum(c * f(o, i) * s for o, i, s, c in rows)
        sgs = sum(c * g(o, i) * s for o, i, s, c in rows)
        det = sff * sgg - sfg * sfg
        return [(sfs * sgg - sgs * sfg) / det, (sgs * sff - sfs * sfg) / det]
    f1 = lambda o, i: o * i
    f2 = lambda o, i: o * i * i
    a, b = lsq([f1, f2])
    if a < 0:
        a, b = 0.0, lsq([f2])[0]
    elif b < 0:
        a, b = lsq([f1])[0], 0.0
    return lambda o, i: a * o * i + b * o * i * i, (a, b)

# ---------------------------------------------------------------------------------------------
# measure


def stamped(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            ts, _, rest = line.partition(" ")
            try:
                out.append((float(ts), rest.rstrip("\n")))
            except ValueError:
                pass
    return out


def parse_run(d):
    """One layout directory of cluster_scaling: per task (layer name): assign, recv, done,
    commit stamps and the worker's compute seconds."""
    tasks = {}
    for ts, l in stamped(os.path.join(d, "coord.log")):
        m = re.search(r"coordinator: '([^']*)' -> worker", l)
        if m:
            tasks.setdefault(m.group(1), {})["assign"] = ts
        m = re.search(r"\] (\S+) committed ", l)
        if m:
            tasks.setdefault(m.group(1), {})["commit"] = ts
    for w in glob.glob(os.path.join(d, "w*.log")):
        for ts, l in stamped(w):
            m = re.search(r"task '([^']*)' \(attempt", l)
            if m:
                tasks.setdefault(m.group(1), {})["recv"] = ts
            m = re.search(r"task '([^']*)' done in ([0-9.]+)s", l)
            if m:
                t = tasks.setdefault(m.group(1), {})
                t["done"], t["compute"] = ts, float(m.group(2))
    return {k: v for k, v in tasks.items() if {"assign", "recv", "done", "commit"} <= v.keys()}


def layer_of(name):
    m = re.match(r"model\.layers\.(\d+)\.\w+\.(\w+)$", name)
    return (int(m.group(1)), m.group(2)) if m else (None, None)


def run_settings(run_dir):
    """nsamples, ctx, blocks, scheme, coordinator threads from cluster_scaling's stdout copy."""
    s = {}
    p = os.path.join(run_dir, "settings.txt")
    if os.path.exists(p):
        for line in open(p):
            k, _, v = line.strip().partition("=")
            s[k] = v
    return s


def layout_dirs(run_dir, layout):
    return sorted(glob.glob(os.path.join(run_dir, f"{layout}-r*")))


def cmd_measure(a):
    s = run_settings(a.run)
    ntok = int(s["nsamples"]) * int(s["ctx"])
    shapes = linears(SMOL)
    lines = [f"# measured by: scripts/sched_model.py measure {a.run}"
             + (f" --ft-log {a.ft_log} --ft-tokens {a.ft_tokens}" if a.ft_log else ""),
             f"# from the run: {s.get('command', '?')}",
             f"# source measured: {s.get('source', '?')}",
             f"# load average during the run: {s.get('load', '?')}",
             "cpu_peak_gflops 450   # nominal fp32 peak of this machine's 2 cores (bench_kernels' default)",
             "cpu_cores 2",
             f"scheme {s.get('scheme', '2x8g8')}",
             f"calib_ctx {s['ctx']}"]
    # quantization seconds per shape, for each thread count
    commit, disp_b, disp_s = [], [], []
    commit_by = {}
    for layout, threads in (("1x1", 1), ("1x2", 2)):
        per = {}
        for d in layout_dirs(a.run, layout):
            for name, t in parse_run(d).items():
                b, kind = layer_of(name)
                if kind is None:
                    continue
                per.setdefault(kind, []).append(t["compute"])
                if threads == 1:
                    n_out, n_in = shapes[kind]
                    commit.append(t["commit"] - t["done"])
                    commit_by.setdefault((n_out, n_in), []).append(t["commit"] - t["done"])
                    disp_b.append(n_in * n_in * 4)
                    disp_s.append(t["recv"] - t["assign"])
        for kind in ORDER:
            if kind in per:
                v = per[kind]
                o, i = shapes[kind]
                lines.append(f"quant {threads} {s.get('scheme', '2x8g8')} {o} {i} {sum(v) / len(v):.4f} {len(v)}"
                             f"   # {kind}, mean over {len(v)} tasks, layout {layout}")
    for (o, i), v in sorted(commit_by.items()):
        lines.append(f"commit {o} {i} {sum(v) / len(v):.5f} {len(v)}   # coordinator 'committed' - worker "
                     "'done' (result message, checks, HDF5 commit), mean, 1x1")
    if commit:
        lines.append(f"commit_s {sum(commit) / len(commit):.5f}   # coordinator 'committed' - worker 'done', "
                     f"mean over {len(commit)} tasks (result message + checks + HDF5 commit), 1x1")
        lines.append(f"dispatch_gbps_loopback {sum(disp_b) / sum(disp_s) * 8 / 1e9:.3f}   # H bytes / "
                     "(worker 'task' - coordinator '->'), loopback, 1x1")
    # calibration: in the 1x1 layout the coordinator calibrates block b+1 between the last
    # commit of block b and the first assign of block b+1 (nothing else runs then)
    gaps = []
    for d in layout_dirs(a.run, "1x1"):
        by_block = {}
        for name, t in parse_run(d).items():
            b, _ = layer_of(name)
            by_block.setdefault(b, []).append(t)
        bs = sorted(by_block)
        for b0, b1 in zip(bs, bs[1:]):
            gaps.append(min(t["assign"] for t in by_block[b1]) - max(t["commit"] for t in by_block[b0]))
    # versions where the workers calibrate: tasks 'calib[a,b)@BLOCK' in the worker logs
    wcal = {}
    for d in layout_dirs(a.run, "1x1"):
        for w in glob.glob(os.path.join(d, "w*.log")):
            for ts, l in stamped(w):
                mm = re.search(r"task 'calib\[\d+,\d+\)@(\d+)' done in ([0-9.]+)s", l)
                if mm:
                    wcal[(d, int(mm.group(1)))] = wcal.get((d, int(mm.group(1))), 0.0) + float(mm.group(2))
    # the first calibrated block of a run starts from the embedding (it forwards every kept
    # block before it): leave it out
    first = {}
    for (d, b) in wcal:
        first[d] = min(first.get(d, b), b)
    wcal = {k: v for k, v in wcal.items() if k[1] != first[k[0]]}
    if wcal:
        v = sorted(wcal.values())
        lines.append(f"calib_s_per_token_block {v[len(v) // 2] / ntok:.4e}   # median over {len(v)} blocks of "
                     f"the worker's calibration task seconds (calib[..]@block) / {ntok} tokens, 1x1")
        lines.append("calib_threads 1")
        lines.append("calib_where workers")
    elif gaps:
        g = sorted(gaps)[len(gaps) // 2]
        lines.append(f"calib_s_per_token_block {g / ntok:.4e}   # median over {len(gaps)} blocks of the "
                     f"coordinator's gap (last commit of b -> first assign of b+1) / {ntok} tokens, "
                     f"{s.get('coord_threads', '?')} coordinator threads")
        lines.append(f"calib_threads {s.get('coord_threads', 2)}")
        lines.append("calib_where coordinator")
    steps = []
    for d in layout_dirs(a.run, "1x1"):
        p = os.path.join(d, "inspect.txt")
        if os.path.exists(p):
            for l in open(p):
                f = l.split()
                if len(f) == 7 and f[0].startswith("model.layers.") and f[6].isdigit():
                    steps.append(int(f[6]))
    if steps:
        lines.append(f"steps_per_layer {sum(steps) / len(steps):.1f}   # mean 'steps' (CG iterations or Adam "
                     f"steps over all rounds) of {len(steps)} layers, lmpress inspect, 1x1")
    if a.ft_log:
        ft = [float(m.group(1)) for m in (re.search(r"finetune block \d+: .* ([0-9.]+)s$", l.strip())
                                          for l in open(a.ft_log)) if m]
        if ft:
            med = sorted(ft)[len(ft) // 2]
            lines.append(f"ft_s_per_token_block {med / a.ft_tokens:.4e}   # median over {len(ft)} blocks of "
                         f"'finetune block' seconds in {a.ft_log} / {a.ft_tokens} tokens per block-epoch")
            lines.append(f"ft_threads {a.ft_threads}")
    txt = "\n".join(lines) + "\n"
    if a.out == "-":
        sys.stdout.write(txt)
    else:
        open(a.out, "w").write(txt)
        print(f"wrote {a.out}")

# ---------------------------------------------------------------------------------------------
# the simulator


def reduce_time(c, P, nbytes):
    """Sum P partial arrays of nbytes each: 'star' (today's coordinator: every part crosses
    the coordinator's link, then it adds them) or 'ring' (a bandwidth-optimal all-reduce among
    the workers: 2 (P-1)/P of the array per link, 2 (P-1) latencies)."""
    net = c["lat"] + nbytes * 8 / (c["gbps"] * 1e9)
    add = nbytes / (c["mem_gbs"] * 1e9)
    if P <= 1:
        return 0.0
    if c["reducer"] == "ring":
        return 2 * (P - 1) * c["lat"] + 2 * (P - 1) / P * (net - c["lat"] + add)
    return P * (net + add)


def independent(m, P, q, c, calib_mode, order="fifo"):
    """Independent mode, event driven. Calibration: 'coord', the coordinator computes every
    block's H in order, back to back (today's lmpress; it calibrates lazily, which is no
    faster); 'workers', the tokens are cut into P shards, each worker forwards its shard
    through every block first (calibration before quantization), and the coordinator sums the
    P partial H of each block (the reducer) as they arrive. Then list scheduling in block
    order (fifo: q k v o gate up down; lpt: largest first within a block): a free worker gets
    the next task once its block is calibrated; the coordinator, one request at a time, sends
    the task its H, and when the result comes back commits it, then dispatches the worker's
    next task (lmpress dispatches after the commit). RET (wall, coordinator busy seconds)."""
    lin = linears(m)
    iw = input_width(m)
    net = lambda nbytes: c["lat"] + nbytes * 8 / (c["gbps"] * 1e9)
    tcal = c["calib_block_s"]
    st = {"free": 0.0, "busy": 0.0}

    def coord(t, dur):
        start = max(t, st["free"])
        st["free"] = start + dur
        st["busy"] += dur
        return st["free"]

    ready, t0 = [], 0.0
    if calib_mode == "coord":
        for b in range(m["n_layers"]):
            ready.append((b + 1) * tcal)
        st["busy"] += m["n_layers"] * tcal
    else:
        shard = tcal / P
        part = sum(4 * n * n for n in iw.values())
        for b in range(m["n_layers"]):
            ready.append(coord((b + 1) * shard, reduce_time(c, P, part)))
        t0 = m["n_layers"] * shard
    tasks = []
    for b in range(m["n_layers"]):
        blk = [(b, k, *lin[k], q(*lin[k])) for k in ORDER]
        if order == "lpt":
            blk.sort(key=lambda x: -x[4])
        tasks += blk
    ev, seq, nxt, end = [], 0, 0, 0.0
    for w in range(P):
        heapq.heappush(ev, (t0, seq, "free", w, None))
        seq += 1
    while ev:
        t, _, kind, w, task = heapq.heappop(ev)
        if kind == "done":
            b, k, o, i, dur = task
            res_bytes = o * (i // c["g"]) * c["M"] * 2 + c["M"] * c["K"] * c["g"] * 4 + o * 4
            t = coord(t, net(res_bytes) + c["commit"](o, i))
            end = max(end, t)
        if nxt == len(tasks):
            continue
        b, k, o, i, dur = tasks[nxt]
        if ready[b] > t:   # wait for the block's calibration, in time order with the rest
            heapq.heappush(ev, (ready[b], seq, "free", w, None))
            seq += 1
            continue
        nxt += 1
        t_start = coord(t, net(4 * i * i))
        heapq.heappush(ev, (t_start + dur, seq, "done", w, tasks[nxt - 1]))
        seq += 1
    return end, st["busy"]


def sequential(m, P, q, c):
    """Sequential mode (the reference order): block by block, and inside a block the groups
    [q,k,v] [o] [gate,up] [down], each calibrated on the outputs of what is already quantized
    (token shards over the P workers + the reducer), then each linear of the group cut into
    row shards over the workers. Every optimisation step needs the codebook gradient summed
    over the shards (a reduction through the coordinator: gather + broadcast of M K g floats),
    steps_per_layer of them. Then the block is fine-tuned data-parallel with an all-reduce of
    the block's parameters per step. The wall time is the critical path, no overlap."""
    lin = linears(m)
    iw = input_width(m)
    net = lambda nbytes: c["lat"] + nbytes * 8 / (c["gbps"] * 1e9)
    groups = [["q_proj", "k_proj", "v_proj"], ["o_proj"], ["gate_proj", "up_proj"], ["down_proj"]]
    gin = ["attn", "o", "mlp", "down"]
    t = 0.0
    for b in range(m["n_layers"]):
        for g, inp in zip(groups, gin):
            # calibration of this input: 1/4 of a block's calibration, split over P workers
            t += c["calib_block_s"] / 4 / P
            t += reduce_time(c, P, 4 * iw[inp] ** 2)
            # the group's linears, their row shards spread over all workers (work divides
            # evenly down to one row block of 8 rows per shard)
            work = sum(q(*lin[k]) for k in g)
            rows = min(sum(lin[k][0] for k in g) // 8, P)
            grad = c["M"] * c["K"] * c["g"] * 4
            steps = c["steps_per_layer"] * len(g)
            t += work / rows + (steps * (reduce_time(c, rows, grad) + net(grad) + c["reduce_s"])
                                if rows > 1 else 0)
        if c["ft_block_s"] > 0:
            # data parallel with a global minibatch of max(4, P) sequences (>= 1 per worker),
            # the gradients of the block's parameters all-reduced every step
            steps = math.ceil(c["ft_seqs"] / max(4, P))
            t += c["ft_block_s"] / P + steps * reduce_time(c, P, 4 * block_params(m))
    return t


def constants(inp, m, gpu_scale, args, threads):
    M, K, g = parse_scheme(inp.get("scheme", "2x8g8"))
    ctx = args.ctx
    ntok = args.nseq * ctx
    # the model calibration was measured on: SmolLM2, or "calib_ref 7b" (an --add-inputs file)
    ref = MODELS.get(str(inp.get("calib_ref", "")), SMOL)
    cal = inp["calib_s_per_token_block"] * calib_flops_per_token(m, ctx) / calib_flops_per_token(ref, int(inp["calib_ctx"]))
    ft = inp.get("ft_s_per_token_block", 0.0) * ft_flops_per_token(m, ctx) / ft_flops_per_token(SMOL, 512)
    c = dict(reducer=args.reducer, M=M, K=K, g=g, lat=args.latency_us * 1e-6, gbps=args.gbps, mem_gbs=args.mem_gbs,
             calib_block_s=cal * ntok * gpu_scale,
             commit=fit_commit(inp)[0],
             steps_per_layer=args.steps_per_layer, reduce_s=args.reduce_us * 1e-6,
             ft_block_s=(ft * ntok * args.ft_epochs * gpu_scale) if args.finetune else 0.0,
             ft_seqs=args.nseq * args.ft_epochs)
    return c


def fit_commit(inp):
    """commit seconds = c0 + c1 n_out n_in (the artifact's codes grow with the weights),
    least squares over the measured shapes, both >= 0."""
    rows = inp.get("commits", [])
    if not rows:
        v = inp.get("commit_s", 0.0)
        return lambda o, i: v, (v, 0.0)
    n = sum(c for *_, c in rows)
    mx = sum(c * o * i for o, i, _, c in rows) / n
    my = sum(c * y for _, _, y, c in rows) / n
    sxx = sum(c * (o * i - mx) ** 2 for o, i, _, c in rows)
    sxy = sum(c * (o * i - mx) * (y - my) for o, i, y, c in rows)
    c1 = max(0.0, sxy / sxx) if sxx > 0 else 0.0
    c0 = max(0.0, my - c1 * mx)
    return lambda o, i: c0 + c1 * o * i, (c0, c1)


def parse_scheme(s):
    mm = re.fullmatch(r"(\d+)x(\d+)g(\d+)", s)
    return int(mm.group(1)), 2 ** int(mm.group(2)), int(mm.group(3))


def fmt_t(s):
    if s >= 86400:
        return f"{s / 86400:.2f} d"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def cmd_predict(a):
    inp = read_inputs(a.inputs, a.add_inputs)
    if a.steps_per_layer is None:
        a.steps_per_layer = inp.get("steps_per_layer", 100.0)
    threads = int(a.threads)
    qcpu, (ca, cb) = fit_quant(inp, threads)
    rate_cpu = inp["cpu_peak_gflops"] / inp["cpu_cores"] * threads * 1e9
    rate_gpu = GPUS[a.gpu] * 1e12 if GPUS[a.gpu] else rate_cpu
    scale = rate_cpu / rate_gpu * a.gpu_eff_ratio
    q = lambda o, i: qcpu(o, i) * scale
    m = MODELS[a.model]
    c = constants(inp, m, scale * 1.0, a, threads)
    # calibration and fine-tuning were measured with calib_threads / ft_threads CPU threads
    c["calib_block_s"] *= inp.get("calib_threads", threads) / threads
    if a.calib_eff:   # the forward and X^T X are GEMMs: a stated fraction of the GPU's peak instead
        c["calib_block_s"] = calib_flops_per_token(m, a.ctx) * a.nseq * a.ctx / (a.calib_eff * rate_gpu)
        c["ft_block_s"] = (ft_flops_per_token(m, a.ctx) * a.nseq * a.ctx * a.ft_epochs / (a.calib_eff * rate_gpu)
                           if a.finetune else 0.0)
    c["ft_block_s"] *= inp.get("ft_threads", threads) / threads
    print(f"model: {m['name']}: {m['n_layers']} blocks, dim {m['dim']}, hidden {m['hidden']}, "
          f"{m['n_heads']} heads / {m['n_kv']} KV heads; scheme {inp.get('scheme')}")
    print(f"inputs: {a.inputs}; per-linear CPU fit at {threads} thread(s): t = {ca:.3e} n_out n_in + "
          f"{cb:.3e} n_out n_in^2 s")
    if GPUS[a.gpu]:
        print(f"GPU worker: {a.gpu} ({GPUS[a.gpu]} TFLOP/s nominal) vs {threads} CPU core(s) at "
              f"{rate_cpu / 1e9:.0f} GFLOP/s nominal: times x {scale:.3e} (same fraction of peak on "
              f"both{'' if a.gpu_eff_ratio == 1 else f', times {a.gpu_eff_ratio}'})")
    else:
        print(f"CPU worker: {threads} core(s) of the measured machine, times as measured")
    print(f"sequential mode: {a.steps_per_layer:.0f} reductions per layer, {a.reduce_us} us of coordinator "
          f"time each, reducer '{a.reducer}'")
    print(f"calibration: {a.nseq} x {a.ctx} tokens, {fmt_t(c['calib_block_s'])} per block on one worker; "
          f"network {a.gbps} Gb/s, {a.latency_us} us; reducer memory {a.mem_gbs} GB/s; "
          f"fine-tuning {'%s per block-epoch x %d epoch(s)' % (fmt_t(c['ft_block_s'] / a.ft_epochs), a.ft_epochs) if a.finetune else 'off'}")
    _, (k0, k1) = fit_commit(inp)
    print(f"commit on the coordinator (not scaled: disk and HDF5 bound): {k0 * 1e3:.1f} ms + "
          f"{k1 * 1e9:.2f} ns per weight; down_proj {fmt_t(c['commit'](*linears(m)['down_proj']))}")
    print(f"H sent per task: n_in^2 x 4 bytes ({linears(m)['down_proj'][1] ** 2 * 4 / 2 ** 30:.1f} GiB for "
          f"down_proj; over 64 MiB it goes by reference through the job's spool)")
    per_block = sum(q(*s) for s in linears(m).values())
    print(f"quantization work: {fmt_t(per_block)} per block, {fmt_t(per_block * m['n_layers'])} in all; "
          f"largest task (down_proj) {fmt_t(q(*linears(m)['down_proj']))}")
    print()
    print("| mode | workers | wall | speedup | efficiency | coordinator busy |")
    print("|---|---|---|---|---|---|")
    for mode in ("independent, coordinator calibrates", "independent, workers calibrate",
                 "sequential, row shards"):
        base = None
        for P in [1] + [int(x) for x in a.workers.split(",")]:
            if mode.startswith("independent"):
                wall, cb = independent(m, P, q, c, "coord" if "coordinator" in mode else "workers", a.order)
                if a.finetune:   # independent mode fine-tunes each block after its layers: P-way parallel blocks
                    wall += c["ft_block_s"] * m["n_layers"] / P
            else:
                wall, cb = sequential(m, P, q, c), float("nan")
            base = base or wall
            if P == 1 and 1 not in [int(x) for x in a.workers.split(",")]:
                print(f"| {mode} | 1 | {fmt_t(wall)} | 1.00 | 100% | {fmt_t(cb) if cb == cb else '-'} |")
                continue
            print(f"| {mode} | {P} | {fmt_t(wall)} | {base / wall:.2f} | {100 * base / (P * wall):.0f}% "
                  f"| {fmt_t(cb) if cb == cb else '-'} |")


def cmd_validate(a):
    inp = read_inputs(a.inputs)
    s = run_settings(a.run)
    nb = int(s["blocks"])
    ntok = int(s["nsamples"]) * int(s["ctx"])
    m = dict(SMOL, n_layers=nb)
    print(f"SmolLM2-135M, the last {nb} blocks, {ntok} calibration tokens; quant phase = first "
          f"assign to last commit (the coordinator's prelude forward through the kept blocks excluded)")
    print("| layout | predicted (inputs) | predicted (this layout's task times) | measured | error (inputs) |")
    print("|---|---|---|---|---|")
    res = {}
    for layout in ("1x2", "2x1", "1x1"):
        W, T = map(int, layout.split("x"))
        q, _ = fit_quant(inp, T)
        args = argparse.Namespace(ctx=int(s["ctx"]), nseq=int(s["nsamples"]), latency_us=50, gbps=8 * float(inp.get("dispatch_gbps_loopback", 8)) / 8,
                                  mem_gbs=10, steps_per_layer=0, reduce_us=0, finetune=False, ft_epochs=1,
                                  reducer="star")
        c = constants(inp, SMOL, 1.0, args, T)
        c["calib_block_s"] = inp["calib_s_per_token_block"] * ntok   # measured at calib_threads
        # the first block's calibration is in the quant phase only after its first assign: drop it
        if inp.get("calib_where", "coordinator") == "workers":
            c["calib_block_s"] *= 1.0 / T   # measured at 1 thread; a T-thread worker
            wall, _ = independent(m, W, q, c, "workers")
        else:
            wall, _ = independent(m, W, q, c, "coord")
            wall -= c["calib_block_s"]
        # the same schedule with this layout's own task times (contention on the 2 cores
        # included): separates the scheduling from the slowdown of each task
        own = {}
        for d in layout_dirs(a.run, layout):
            for name, t in parse_run(d).items():
                own.setdefault(layer_of(name)[1], []).append(t["compute"])
        sh = {v: k for k, v in linears(SMOL).items()}
        qo = lambda o, i, _own=own: sum(_own[[k for k, s_ in linears(SMOL).items() if s_ == (o, i)][0]]) / \
            len(_own[[k for k, s_ in linears(SMOL).items() if s_ == (o, i)][0]])
        wall_own, _ = independent(m, W, qo, c, "coord")
        wall_own -= c["calib_block_s"]
        meas = []
        for d in layout_dirs(a.run, layout):
            t = parse_run(d)
            if t:
                meas.append(max(x["commit"] for x in t.values()) - min(x["assign"] for x in t.values()))
        mm = sorted(meas)[len(meas) // 2] if meas else float("nan")
        res[layout] = (wall, mm)
        print(f"| {layout} | {wall:.1f} s | {wall_own:.1f} s | {mm:.1f} s | {100 * (wall - mm) / mm:+.0f}% |")
    if "1x2" in res and "2x1" in res:
        print(f"\nspeedup 2x1 vs 1x2: predicted {res['1x2'][0] / res['2x1'][0]:.2f}x, measured "
              f"{res['1x2'][1] / res['2x1'][1]:.2f}x")
        print(f"speedup 2x1 vs 1x1: predicted {res['1x1'][0] / res['2x1'][0]:.2f}x, measured "
              f"{res['1x1'][1] / res['2x1'][1]:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    here = os.path.dirname(os.path.abspath(__file__))
    default_inputs = os.path.join(here, "..", "bench", "sched_inputs.txt")
    p = sub.add_parser("measure")
    p.add_argument("run")
    p.add_argument("--ft-log")
    p.add_argument("--ft-tokens", type=int, default=128 * 512)
    p.add_argument("--ft-threads", type=int, default=2)
    p.add_argument("--out", default=default_inputs)
    p = sub.add_parser("validate")
    p.add_argument("run")
    p.add_argument("--inputs", default=default_inputs)
    p = sub.add_parser("predict")
    p.add_argument("--inputs", default=default_inputs)
    p.add_argument("--gpu", default="a100-tf32", choices=sorted(GPUS),
                   help="the workers' device; cpu: the measured machine's cores")
    p.add_argument("--model", default="70b", choices=sorted(MODELS),
                   help="the shapes: Llama-2-70B (default) or Llama-2-7B")
    p.add_argument("--add-inputs", default=None,
                   help="a second inputs file whose lines are added (e.g. measured big-shape "
                        "quantization times, bench/sched_inputs_big.txt)")
    p.add_argument("--gpu-eff-ratio", type=float, default=1.0,
                   help="GPU time multiplier on top of the peak ratio (1: same fraction of peak)")
    p.add_argument("--threads", default="1", help="which measured CPU thread count to scale from")
    p.add_argument("--workers", default="8,32,64")
    p.add_argument("--gbps", type=float, default=100.0, help="network, Gb/s (default: 100, InfiniBand EDR)")
    p.add_argument("--latency-us", type=float, default=10.0)
    p.add_argument("--mem-gbs", type=float, default=20.0, help="reducer's memory bandwidth for H sums")
    p.add_argument("--nseq", type=int, default=2048)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--steps-per-layer", type=float, default=None,
                   help="sequential mode: reductions per layer (optimisation steps over all rounds; "
                        "default: the measured steps_per_layer of the inputs, else 100)")
    p.add_argument("--reduce-us", type=float, default=50.0, help="coordinator time per reduction")
    p.add_argument("--calib-eff", type=float, default=None,
                   help="calibration and fine-tuning at this fraction of the GPU's peak (default: the "
                        "fraction measured on the CPU)")
    p.add_argument("--finetune", action="store_true")
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--order", default="fifo", choices=["fifo", "lpt"])
    p.add_argument("--reducer", default="star", choices=["star", "ring"],
                   help="how partial sums meet: at the coordinator (star) or in a ring all-reduce")
    a = ap.parse_args()
    {"measure": cmd_measure, "validate": cmd_validate, "predict": cmd_predict}[a.cmd](a)


if __name__ == "__main__":
    main()
