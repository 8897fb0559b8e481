#!/usr/bin/python3
"""PyTorch eager fp32 peer of megatron-bench, for bench/e2e.sh.

Runs the same Megatron-BERT / GPT-2 forward as a compiled artifact, written
the way a careful eager user would (torch.nn.functional, fused QKV, KV cache
by concatenation, torch.inference_mode), on the weights of the same
checkpoint, and prints one JSON line with the same keys as megatron-bench:

    torch_peer.py CKPT forward [--batch 1] [--seq 128] [--warmup 3] [--iters 20] [--threads N]
                               [--dtype fp32|bf16] [--quantize int8]
    torch_peer.py CKPT decode [--batch 1] [--prompt 32] [--new-tokens 64] [--warmup 1] [--iters 3]
                              [--threads N] [--dtype fp32|bf16] [--quantize int8]

forward: BERT masked-lm logits (megatron-compile's default task) for random
ids; decode: GPT-2 prefill of random prompts [batch, prompt], then greedy
decode steps of one token per row.
Input ids come from the same splitmix64 stream as megatron-bench's, so both
see the same tokens and greedy decoding should pick the same ones.

--dtype bf16: every weight and activation in bfloat16 (torch runs its
bf16 GEMMs through oneDNN, on AVX512-BF16 where the CPU has it).

--quantize int8: PyTorch's dynamic int8 quantization of the linear layers
that megatron-compile --quantize int8 quantizes (per-channel qint8 weights
prepacked once, activations quantized per call: quantized::linear_dynamic);
the tied LM head stays fp32, as ours does by default.
"""

import argparse
import ctypes
import json
import os
import re
import statistics
import sys
import time


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('checkpoint')
    ap.add_argument('mode', choices=('forward', 'decode'))
    ap.add_argument('--batch', type=int, default=1)
    ap.add_argument('--seq', type=int, default=128)
    ap.add_argument('--prompt', type=int, default=32)
    ap.add_argument('--new-tokens', type=int, default=64)
    ap.add_argument('--warmup', type=int, default=None, help='untimed runs (forward 3, decode 1)')
    ap.add_argument('--iters', type=int, default=None, help='timed runs (forward 20, decode 3)')
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--dtype', choices=('fp32', 'bf16'), default='fp32')
    ap.add_argument('--quantize', choices=('none', 'int8'), default='none')
    ap.add_argument('--vocab', type=int, default=None,
                    help="logits width and id range (default: the checkpoint's vocab_size); e2e.sh passes "
                         "the artifact's, as megatron-compile may drop Megatron's vocab padding")
    opts = ap.parse_args(argv)
    warmup, iters = (3, 20) if opts.mode == 'forward' else (1, 3)
    opts.warmup = warmup if opts.warmup is None else opts.warmup
    opts.iters = iters if opts.iters is None else opts.iters
    if opts.threads < 1 or opts.iters < 1 or opts.warmup < 0:
        ap.error('--threads and --iters must be >= 1, --warmup >= 0')
    if opts.dtype != 'fp32' and opts.quantize != 'none':
        ap.error('--quantize int8 quantizes fp32 weights (no --dtype)')
    return opts


OPTS = parse_args(sys.argv[1:])
# OpenBLAS (Debian torch's BLAS) sizes its pool when loaded and ignores
# torch.set_num_threads, so pin it before torch is imported.
os.environ['OPENBLAS_NUM_THREADS'] = os.environ['OMP_NUM_THREADS'] = str(OPTS.threads)
# Torch's elementwise ops run on libgomp, whose idle workers spin by default
# and then fight OpenBLAS's own pool for the same cores: on 2 cores that made
# BERT-345M ~3x slower (1.6-1.9 s vs 0.62 s). Compare against the fast setting.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'reference'))
import reference  # noqa: E402


def random_ids(count, vocab, seed):
    """splitmix64 modulo vocab; megatron-bench.cpp draws the identical stream."""
    mask = (1 << 64) - 1
    state, ids = seed & mask, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        ids.append((z ^ (z >> 31)) % vocab)
    return ids


def blas_backend():
    """The BLAS library torch calls (its BLAS_INFO only says 'generic') and that library's thread count."""
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    with open('/proc/self/maps') as maps:
        libs = sorted({os.path.realpath(line.split()[-1]) for line in maps
                       if 'blas' in os.path.basename(line.split()[-1])})
    threads = None
    for lib in libs:
        try:
            threads = ctypes.CDLL(lib).openblas_get_num_threads()
            break
        except (OSError, AttributeError):    # not OpenBLAS
            continue
    blas_info = re.search(r'BLAS_INFO=[^,]*', torch.__config__.show())
    return {'blas': f'torch {torch.__version__} ({blas_info.group(0) if blas_info else "BLAS_INFO=?"}) '
                    f'calls {", ".join(libs) or "no BLAS library"}',
            'blas_threads': threads}


class Peer:
    """The model's weights, rearranged once for eager execution."""

    def __init__(self, model, vocab, quantize='none', dtype=None):
        cfg, w = model.config, model.weights
        if dtype is not None:
            w = {name: t.to(dtype) for name, t in w.items()}
        self.cfg, self.vocab = cfg, vocab
        self.dtype = next(iter(w.values())).dtype
        self.gelu = 'tanh' if cfg.gelu == 'tanh' else 'none'
        self.head_gelu = 'tanh' if cfg.head_gelu == 'tanh' else 'none'
        self.word = w['embeddings.word']
        self.decoder = self.word[:vocab]          # tied LM head / MLM decoder
        self.position = w['embeddings.position']
        self.token_type = w.get('embeddings.token_type')

        def pair(prefix):
            return w[prefix + '.weight'], w[prefix + '.bias']

        def linear(weight, bias):
            """x -> x W^T + b, in fp32 or torch's dynamic int8."""
            if quantize == 'none':
                return lambda x: F.linear(x, weight, bias)
            scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
            q = torch.quantize_per_channel(weight, scales, torch.zeros_like(scales, dtype=torch.long),
                                           0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(q, bias)
            return lambda x: torch.ops.quantized.linear_dynamic(x, packed)

        self.layers = []
        for i in range(cfg.layers):
            p = f'layers.{i}.'
            # One [3h, h] GEMM instead of three, as Megatron and HF GPT-2 do.
            qkv = linear(torch.cat([w[p + n + '.weight'] for n in ('query', 'key', 'value')]),
                         torch.cat([w[p + n + '.bias'] for n in ('query', 'key', 'value')]))
            self.layers.append(dict(ln1=pair(p + 'ln1'), qkv=qkv, out=linear(*pair(p + 'attn_out')),
                                    ln2=pair(p + 'ln2'), fc1=linear(*pair(p + 'fc1')),
                                    fc2=linear(*pair(p + 'fc2'))))
        self.final_ln = pair('final_ln')
        if cfg.model_type == 'bert':
            self.mlm_dense, self.mlm_ln = linear(*pair('mlm.dense')), pair('mlm.ln')
            self.mlm_bias = w['mlm.bias'][:vocab]

    def ln(self, x, wb):
        return F.layer_norm(x, (x.shape[-1],), wb[0], wb[1], self.cfg.eps)

    def attention(self, x, layer, past, mask):
        batch, seq, hidden = x.shape
        heads = self.cfg.heads
        head_dim = hidden // heads
        qkv = layer['qkv'](x).view(batch, seq, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * head_dim ** -0.5, qkv[1], qkv[2]   # scale q: [S, d] is smaller than [S, S]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2))
        if mask is not None:
            scores = scores + mask
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return layer['out'](context.transpose(1, 2).reshape(batch, seq, hidden)), (k, v)

    def encode(self, ids, cache=None):
        """Final-LN hidden states of ids [B, S] after `cache` (a list of per-layer (K, V)), and the new cache."""
        seq = ids.shape[1]
        past = 0 if cache is None else cache[0][0].shape[2]
        x = F.embedding(ids, self.word) + self.position[past:past + seq]
        if self.token_type is not None:
            x = x + self.token_type[0]                  # token types are all 0
        mask = None
        if self.cfg.causal and seq > 1:                 # a single query sees every cached key
            mask = torch.full((seq, past + seq), float('-inf'), dtype=self.dtype).triu_(past + 1)
        new_cache = []
        for i, layer in enumerate(self.layers):
            a, kv = self.attention(self.ln(x, layer['ln1']), layer, None if cache is None else cache[i], mask)
            h = x + a
            x = h + layer['fc2'](F.gelu(layer['fc1'](self.ln(h, layer['ln2'])), approximate=self.gelu))
            new_cache.append(kv)
        return self.ln(x, self.final_ln), new_cache

    def mlm_logits(self, ids):
        hidden, _ = self.encode(ids)
        h = F.gelu(self.mlm_dense(hidden), approximate=self.head_gelu)
        return F.linear(self.ln(h, self.mlm_ln), self.decoder, self.mlm_bias)

    def lm_logits(self, ids, cache=None, last_only=False):
        hidden, cache = self.encode(ids, cache)
        return F.linear(hidden[:, -1:] if last_only else hidden, self.decoder), cache


def bench_forward(peer, opts):
    vocab = peer.vocab
    ids = torch.tensor(random_ids(opts.batch * opts.seq, vocab, opts.seed)).view(opts.batch, opts.seq)
    times = []
    for i in range(opts.warmup + opts.iters):
        start = time.perf_counter()
        peer.mlm_logits(ids)
        if i >= opts.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return dict(batch=opts.batch, seq=opts.seq, vocab=vocab, median_ms=statistics.median(times),
                min_ms=min(times), max_ms=max(times))


def generate(peer, prompt, new_tokens):
    """Greedy: prefill, then new_tokens decode steps of one token per row.
    The prefill's LM head takes the last position only, as megatron-bench's
    prefill_last and Transformers' generate (logits_to_keep=1) do.
    Returns (prefill s, decode s, the ids generated for row 0)."""
    start = time.perf_counter()
    logits, cache = peer.lm_logits(prompt, last_only=True)
    token = logits[:, -1].argmax(dim=-1, keepdim=True)
    prefilled = time.perf_counter()
    tokens = [int(token[0])]
    for _ in range(new_tokens):
        logits, cache = peer.lm_logits(token, cache)
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
        tokens.append(int(token[0]))
    return prefilled - start, time.perf_counter() - prefilled, tokens


def bench_decode(peer, opts):
    if opts.prompt + opts.new_tokens > peer.cfg.max_positions:
        raise SystemExit(f'error: prompt + new tokens exceed {peer.cfg.max_positions} positions')
    vocab = peer.vocab
    prompt = torch.tensor(random_ids(opts.batch * opts.prompt, vocab, opts.seed)).view(opts.batch, opts.prompt)
    runs = [generate(peer, prompt, opts.new_tokens) for _ in range(opts.warmup + opts.iters)][opts.warmup:]
    return dict(batch=opts.batch, prompt=opts.prompt, new_tokens=opts.new_tokens, vocab=vocab,
                prefill_ms=statistics.median(r[0] * 1e3 for r in runs),
                decode_ms=statistics.median(r[1] * 1e3 for r in runs),
                tokens_per_s=statistics.median(opts.batch * opts.new_tokens / r[1] for r in runs),
                tokens=runs[0][2])


def main():
    torch.set_num_threads(OPTS.threads)
    try:
        model = reference.load(OPTS.checkpoint)
    except reference.ReferenceError as e:
        raise SystemExit(f'error: {OPTS.checkpoint}: {e}')
    want = 'bert' if OPTS.mode == 'forward' else 'gpt2'
    if model.config.model_type != want:
        raise SystemExit(f'error: {OPTS.mode} benchmarks a {want} checkpoint, {OPTS.checkpoint} is '
                         f'{model.config.model_type}')
    vocab = OPTS.vocab or model.config.vocab_size
    if not 0 < vocab <= model.config.vocab_rows:
        raise SystemExit(f'error: --vocab must lie in [1, {model.config.vocab_rows}], got {vocab}')
    peer = Peer(model, vocab, OPTS.quantize, torch.bfloat16 if OPTS.dtype == 'bf16' else None)
    del model
    with torch.inference_mode():
        result = (bench_forward if OPTS.mode == 'forward' else bench_decode)(peer, OPTS)
    print(json.dumps(dict(impl='torch', mode=OPTS.mode, dtype=OPTS.dtype, quantize=OPTS.quantize, threads=torch.get_num_threads(), warmup=OPTS.warmup,
                          iters=OPTS.iters, **result, **blas_backend(),
                          omp_wait_policy=os.environ['OMP_WAIT_POLICY'])))


if __name__ == '__main__':
    main()
