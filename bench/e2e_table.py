#!/usr/bin/python3
"""Markdown table of a bench/e2e.sh run: e2e_table.py RESULTS_DIR.

Reads what e2e.sh left in RESULTS_DIR: compile_{bert,gpt2}.time ("seconds
peak_KiB" from /usr/bin/time -f '%e %M') and {ours,torch}_{forward,decode}.json
(one JSON line each, from megatron-bench and torch_peer.py). Missing files
(e.g. with --torch-only) show as "-".
"""

import json
import os
import sys

# Issue 3's targets.
COMPILE_SECONDS = 60
COMPILE_MIB = 3 * 1024


def read(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read().strip()
    return json.loads(text) if name.endswith('.json') else [float(v) for v in text.split()]


def fmt(value, digits=1):
    return '-' if value is None else f'{value:.{digits}f}'


def verdict(ok):
    return '-' if ok is None else ('met' if ok else '**missed**')


def main(results):
    rows = []   # (what, ours, torch, speedup, target, verdict)
    for model, label in (('bert', 'BERT-345M'), ('gpt2', 'GPT-2-345M')):
        t = read(results, f'compile_{model}.time')
        seconds, mib = (t[0], t[1] / 1024) if t else (None, None)
        targets = model == 'bert'   # the targets are set for BERT; GPT-2 is reported alongside
        rows.append((f'{label} compile time (s)', fmt(seconds), '', '',
                     f'< {COMPILE_SECONDS} s' if targets else '',
                     verdict(seconds < COMPILE_SECONDS) if targets and t else ''))
        rows.append((f'{label} compile peak RSS (MiB)', fmt(mib, 0), '', '',
                     f'< {COMPILE_MIB} MiB' if targets else '',
                     verdict(mib < COMPILE_MIB) if targets and t else ''))

    def side_by_side(mode, key, what, higher_is_better=False, target='', check=False):
        ours, torch = read(results, f'ours_{mode}.json'), read(results, f'torch_{mode}.json')
        o, p = (r[key] if r else None for r in (ours, torch))
        speedup = None if o is None or p is None else (o / p if higher_is_better else p / o)
        rows.append((what, fmt(o), fmt(p), fmt(speedup, 2), target,
                     verdict(speedup >= 1.0) if check and speedup is not None else ''))
        return ours, torch

    fwd = read(results, 'torch_forward.json') or read(results, 'ours_forward.json') or {}
    side_by_side('forward', 'median_ms',
                 f'BERT-345M forward {fwd.get("batch", "?")}x{fwd.get("seq", "?")}, median ms',
                 target='speedup >= 1 (no slower than torch eager)', check=True)
    dec = read(results, 'torch_decode.json') or read(results, 'ours_decode.json') or {}
    side_by_side('decode', 'prefill_ms', f'GPT-2-345M prefill {dec.get("prompt", "?")} tokens, median ms')
    ours, torch = side_by_side('decode', 'tokens_per_s',
                               f'GPT-2-345M decode {dec.get("new_tokens", "?")} steps, tokens/s',
                               higher_is_better=True)

    print('| measurement | megatron (ours) | torch eager fp32 | speedup (torch time / ours) | target | status |')
    print('|---|---:|---:|---:|---|---|')
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')

    print()
    if fwd.get('blas'):
        print(f'torch BLAS: {fwd["blas"]}, {fwd["blas_threads"]} BLAS threads, '
              f'OMP_WAIT_POLICY={fwd["omp_wait_policy"]}')
    for mode in ('forward', 'decode'):
        runs = [r for r in (read(results, f'{impl}_{mode}.json') for impl in ('ours', 'torch')) if r]
        if runs:
            print(f'{mode}: ' + '; '.join(f'{r["impl"]} {r["threads"]} threads, {r["warmup"]} warm-up + '
                                          f'{r["iters"]} timed runs, ids below {r["vocab"]}' for r in runs))
    if ours and torch:
        a, b = ours['tokens'], torch['tokens']
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f'greedy tokens: ours and torch agree on the first {same} of {len(b)}'
              + ('' if ours['vocab'] == torch['vocab'] else
                 f' (different id ranges: {ours["vocab"]} vs {torch["vocab"]})'))


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: e2e_table.py RESULTS_DIR')
    main(sys.argv[1])
