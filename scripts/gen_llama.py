#!/usr/bin/env python3
"""gen_llama - a Hugging Face Llama checkpoint in a real model's shapes, with seeded synthetic
values (no such checkpoint can be fetched here, or none with that many layers):
config.json + model.safetensors (F16), weights drawn from a fixed pool of N(0, 0.02) values
(a seeded random offset per tensor, so writing is I/O bound), norms 1. The values are not a
trained model's; the shapes, the file layout and the work per block are a real one's.

    scripts/gen_llama.py OUT_DIR [--shape smollm2|7b|70b] [--layers N] [--vocab V]
                         [--tokenizer FILE]

--shape 7b: Llama-2-7B (dim 4096, hidden 11008, 32 heads, 32 KV heads; 32 blocks, 12.9 GB
at vocab 512); 70b: Llama-2-70B (dim 8192, hidden 28672, 64 heads, 8 KV heads, GQA; 80
blocks, 1.7 GB per block); smollm2: SmolLM2-135M (dim 576, hidden 1536, 9 heads, 3 KV
heads, tied embeddings; 30 blocks). --layers (default: the model's count) writes the first
N blocks (any N for smollm2). --vocab (default 512) matches the tokenizer the caller pairs
it with; --tokenizer copies a tokenizer.json into OUT_DIR.
"""
import argparse
import json
import os
import random
import shutil
import struct
import sys

# dim, hidden, heads, kv heads, blocks, tied embeddings, rope theta, context, log2 of the
# value pool (the outputs of the benches that use them stay as they were)
SHAPES = {
    'smollm2': (576, 1536, 9, 3, 30, True, 100000.0, 8192, 20),
    '7b': (4096, 11008, 32, 32, 32, False, 10000.0, 4096, 22),
    '70b': (8192, 28672, 64, 8, 80, False, 10000.0, 4096, 22),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out')
    ap.add_argument('--shape', choices=sorted(SHAPES), default='7b')
    ap.add_argument('--layers', type=int, default=0)
    ap.add_argument('--vocab', type=int, default=512)
    ap.add_argument('--tokenizer')
    a = ap.parse_args()
    dim, hidden, n_heads, n_kv, n_layers, tied, theta, ctx, pool_bits = SHAPES[a.shape]
    if a.layers < 0 or (a.layers > n_layers and a.shape != 'smollm2') or a.vocab < 2:
        sys.exit('gen_llama: --layers must be 1..%d and --vocab at least 2' % n_layers)
    if a.layers:
        n_layers = a.layers
    hd = dim // n_heads
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(1234)
    n_pool = 1 << pool_bits
    pool = struct.pack('<%de' % n_pool, *[rng.gauss(0.0, 0.02) for _ in range(n_pool)])
    ones = struct.pack('<e', 1.0) * dim
    shapes = [('model.embed_tokens.weight', (a.vocab, dim))]
    for b in range(n_layers):
        p = 'model.layers.%d.' % b
        shapes += [(p + 'input_layernorm.weight', (dim,)),
                   (p + 'self_attn.q_proj.weight', (n_heads * hd, dim)),
                   (p + 'self_attn.k_proj.weight', (n_kv * hd, dim)),
                   (p + 'self_attn.v_proj.weight', (n_kv * hd, dim)),
                   (p + 'self_attn.o_proj.weight', (dim, n_heads * hd)),
                   (p + 'post_attention_layernorm.weight', (dim,)),
                   (p + 'mlp.gate_proj.weight', (hidden, dim)),
                   (p + 'mlp.up_proj.weight', (hidden, dim)),
                   (p + 'mlp.down_proj.weight', (dim, hidden))]
    shapes.append(('model.norm.weight', (dim,)))
    if not tied:
        shapes.append(('lm_head.weight', (a.vocab, dim)))
    header, off = {}, 0
    for name, shape in shapes:
        n = 2
        for d in shape:
            n *= d
        header[name] = {'dtype': 'F16', 'shape': list(shape), 'data_offsets': [off, off + n]}
        off += n
    hj = json.dumps(header, separators=(',', ':')).encode()
    hj += b' ' * (-len(hj) % 8)
    tmp = os.path.join(a.out, 'model.safetensors.part')
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)) + hj)
        for name, shape in shapes:
            n = 2
            for d in shape:
                n *= d
            if len(shape) == 1:
                f.write(ones)
                continue
            pos = rng.randrange(len(pool) // 2) * 2
            while n > 0:
                chunk = pool[pos:pos + n]
                f.write(chunk)
                n -= len(chunk)
                pos = 0
    cfg = {'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_act': 'silu',
           'hidden_size': dim, 'intermediate_size': hidden, 'num_attention_heads': n_heads,
           'num_key_value_heads': n_kv, 'num_hidden_layers': n_layers, 'head_dim': hd,
           'vocab_size': a.vocab, 'max_position_embeddings': ctx, 'rms_norm_eps': 1e-5,
           'rope_theta': theta, 'tie_word_embeddings': tied, 'torch_dtype': 'float16'}
    with open(os.path.join(a.out, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=1)
    if a.tokenizer and a.tokenizer.endswith('.json'):
        shutil.copy(a.tokenizer, os.path.join(a.out, 'tokenizer.json'))
    os.replace(tmp, os.path.join(a.out, 'model.safetensors'))


if __name__ == '__main__':
    main()
