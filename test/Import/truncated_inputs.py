"""Runs megatron-compile on truncated and bit-flipped copies of real
checkpoint files and checks that every run ends with a one-line `error:` and
exit status 1: never a crash, a hang or a success on damaged input.

Usage: truncated_inputs.py MEGATRON_COMPILE FIXTURES_DIR WORK_DIR
"""
import os
import random
import shutil
import subprocess
import sys

compile_tool, fixtures, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)

# (file inside the fixtures, how to pass it): each container format once.
sources = [
    "megatron/bert_v3_tp1.pt",        # torch zip
    "megatron/bert_v1_legacy.pt",     # legacy torch.save
    "megatron/gpt2_ngc.zip",          # deflated zip of a torch zip
    "hf/gpt2_safetensors/model.safetensors",
]
rng = random.Random(1234)
failures = []
runs = 0

def check(path, what):
    global runs
    runs += 1
    args = [compile_tool, path, "--compile-to=import", "-o", os.devnull]
    if "gpt2" in what:
        args += ["--set", "n_head=4"]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        failures.append(f"{what}: hung")
        return
    lines = result.stderr.strip().splitlines()
    if result.returncode != 1 or len(lines) != 1 or not lines[0].startswith("error: "):
        failures.append(f"{what}: exit {result.returncode}, stderr {result.stderr[-300:]!r}")

for source in sources:
    data = open(os.path.join(fixtures, source), "rb").read()
    name = os.path.basename(source)
    # Truncations at the start, inside headers, and spread over the file.
    cuts = sorted({1, 8, 30, 64, 100} | {rng.randrange(1, len(data)) for _ in range(12)})
    for cut in cuts:
        target = os.path.join(work, f"cut{cut}_{name}")
        with open(target, "wb") as f:
            f.write(data[:cut])
        check(target, f"{source} cut at {cut}")
    # Flipped bytes in the first 4 KiB, where headers and pickles live: the
    # result may still import (a flipped weight byte is legal data), so only
    # crashes and hangs count here.
    for trial in range(12):
        damaged = bytearray(data)
        for _ in range(4):
            damaged[rng.randrange(0, min(len(damaged), 4096))] ^= 1 << rng.randrange(8)
        target = os.path.join(work, f"flip{trial}_{name}")
        with open(target, "wb") as f:
            f.write(damaged)
        args = [compile_tool, target, "--compile-to=import", "-o", os.devnull, "--set", "n_head=4"]
        runs += 1
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            failures.append(f"{source} flip trial {trial}: hung")
            continue
        if result.returncode not in (0, 1):
            failures.append(f"{source} flip trial {trial}: exit {result.returncode} {result.stderr[-300:]!r}")

shutil.rmtree(work)
for failure in failures:
    print("FAIL:", failure)
print(f"{runs - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
