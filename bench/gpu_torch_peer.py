#!/usr/bin/env python3
"""PyTorch + Hugging Face Transformers on one NVIDIA GPU: the peer that the
CUDA backend is measured against (issue 7), on 345M-shaped models with
random weights (the shapes of bench/cpu.sh's checkpoints).

    gpu_torch_peer.py [--dtypes float16,bfloat16] [--compile] [--quick]

Prints one JSON object per measurement (one per line):
  - the device's copy bandwidth (bytes read + written per second over a
    2 GiB device-to-device copy), the ceiling of memory-bound decode;
  - BERT forward latency (MegatronBertForMaskedLM, whose attention in
    Transformers is eager only, and BertForMaskedLM with SDPA) at
    batch 1 x 128 and 32 x 512, eager and, with --compile, torch.compile;
  - GPT-2 (GPT2LMHeadModel) greedy decode at batch 1 and 16: a 128-token
    prompt, then 128 steps of one token per row with the KV cache; tokens/s
    counts decode steps only, and the weight-read floor is the time to read
    every weight once per step at the measured bandwidth.
Times come from CUDA events around whole calls, medians of repeated runs
after warm-up.
"""

import argparse
import json
import statistics
import sys

import torch
import transformers

BERT = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
            max_position_embeddings=512, vocab_size=30592, type_vocab_size=2)
GPT2 = dict(n_embd=1024, n_layer=24, n_head=16, n_inner=4096, n_positions=1024, vocab_size=50304)


def emit(**record):
    print(json.dumps(record), flush=True)


def timed(fn, warmup, iters):
    """Median milliseconds of fn() over iters calls after warmup calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth():
    n = 1 << 31
    a = torch.empty(n, dtype=torch.uint8, device='cuda')
    b = torch.empty_like(a)
    ms = timed(lambda: b.copy_(a), 3, 10)
    return 2 * n / (ms * 1e-3)


def bert(cls, dtype, compiled, quick):
    config_cls = transformers.MegatronBertConfig if cls is transformers.MegatronBertForMaskedLM else transformers.BertConfig
    with torch.device('cuda'):
        # Transformers' Megatron-BERT has only its eager attention; BERT, the same GEMMs with
        # post-LN, also has SDPA (flash attention).
        attention = 'eager' if cls is transformers.MegatronBertForMaskedLM else 'sdpa'
        model = cls(config_cls(**BERT, attn_implementation=attention))
        model = model.to(dtype).eval()
    run = torch.compile(model) if compiled else model
    for batch, seq in ((1, 128), (32, 512)):
        ids = torch.randint(0, BERT['vocab_size'], (batch, seq), device='cuda')
        with torch.inference_mode():
            ms = timed(lambda: run(input_ids=ids).logits, 5 if compiled else 3, 5 if quick else 20)
        emit(model=cls.__name__, mode='torch.compile' if compiled else 'eager', dtype=str(dtype)[6:],
             batch=batch, seq=seq, ms=round(ms, 3))


def gpt2(dtype, bandwidth, quick):
    with torch.device('cuda'):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2, attn_implementation='sdpa'))
        model = model.to(dtype).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    prompt, steps = 128, 32 if quick else 128
    for batch in (1, 16):
        ids = torch.randint(0, GPT2['vocab_size'], (batch, prompt), device='cuda')

        def decode():
            with torch.inference_mode():
                out = model(input_ids=ids, use_cache=True)
                cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                torch.cuda.synchronize()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(steps):
                    out = model(input_ids=token, past_key_values=cache, use_cache=True)
                    cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                end.record()
                end.synchronize()
                return start.elapsed_time(end)

        decode()
        ms = statistics.median(decode() for _ in range(1 if quick else 3))
        step_ms = ms / steps
        floor_ms = weight_bytes / bandwidth * 1e3
        emit(model='GPT2LMHeadModel', mode='eager decode', dtype=str(dtype)[6:], batch=batch,
             prompt=prompt, steps=steps, tokens_per_s=round(batch * steps / (ms * 1e-3), 1),
             step_ms=round(step_ms, 3), weight_bytes=weight_bytes,
             floor_fraction=round(floor_ms / step_ms, 3))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--dtypes', default='float16,bfloat16')
    ap.add_argument('--compile', action='store_true', help='also BERT under torch.compile')
    ap.add_argument('--quick', action='store_true', help='fewer timed runs')
    opts = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit('error: PyTorch sees no CUDA device')
    torch.backends.cuda.matmul.allow_tf32 = True
    bandwidth = copy_bandwidth()
    emit(device=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__,
         copy_bandwidth_GBps=round(bandwidth / 1e9, 1))
    for name in opts.dtypes.split(','):
        dtype = getattr(torch, name)
        for cls in (transformers.MegatronBertForMaskedLM, transformers.BertForMaskedLM):
            bert(cls, dtype, False, opts.quick)
            if opts.compile:
                try:
                    bert(cls, dtype, True, opts.quick)
                except Exception as e:  # torch.compile's failures are many and not ours to fix
                    emit(model=cls.__name__, mode='torch.compile', dtype=name, error=str(e)[:300])
        gpt2(dtype, bandwidth, opts.quick)


if __name__ == '__main__':
    main()
