"""Compiles tiny BERT and GPT-2 artifacts, then runs megatron-run on copies
damaged in their header and FlatBuffer (truncated, bit-flipped) and checks
that each run either succeeds or ends with a one-line `error:` and exit
status 1: never a crash, a hang, or an out-of-bounds access. Flipped bytes
that the FlatBuffer verifier accepts (a shape constant, an offset, a step
kind, a buffer index) must be caught by the runtime's own checks.

Usage: damaged_artifacts.py MEGATRON_COMPILE MEGATRON_RUN FIXTURES_DIR WORK_DIR
"""
import os
import random
import shutil
import struct
import subprocess
import sys

compile_tool, run_tool, fixtures, work = sys.argv[1:5]
os.makedirs(work, exist_ok=True)
rng = random.Random(4321)
failures = []
runs = 0

def run(args, what, must_fail):
    global runs
    runs += 1
    try:
        result = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=60)
    except subprocess.TimeoutExpired:
        failures.append(f"{what}: hung")
        return
    lines = result.stderr.strip().splitlines()
    failed_cleanly = (result.returncode == 1 and len(lines) == 1
                      and lines[0].startswith("error: "))
    if not failed_cleanly and (must_fail or result.returncode != 0):
        failures.append(f"{what}: exit {result.returncode}, stderr {result.stderr[-300:]!r}")

for fixture, flags, ids in [
        ("megatron/bert_v3_tp1", ["--task", "pretraining"], "1,2,3;4,5,6"),
        ("megatron/gpt2_v3_tp1", [], "1,2,3,4;5,6,7,8")]:
    name = os.path.basename(fixture)
    good = os.path.join(work, name + ".mtc")
    subprocess.run([compile_tool, os.path.join(fixtures, fixture), "-o", good,
                    "--max-batch", "2", "--max-seq", "16"] + flags, check=True)
    data = open(good, "rb").read()
    flatbuffer_end = 64 + struct.unpack_from("<Q", data, 24)[0]
    forward = ["forward", "--input-ids", ids, "--output-dir", os.path.join(work, "out")]
    run([run_tool, good] + forward, f"{name} intact", must_fail=False)
    if failures:
        break
    for cut in sorted({1, 8, 63, 64, 65, flatbuffer_end - 1, len(data) - 1} |
                      {rng.randrange(1, len(data)) for _ in range(8)}):
        target = os.path.join(work, "cut.mtc")
        with open(target, "wb") as f:
            f.write(data[:cut])
        run([run_tool, target] + forward, f"{name} cut at {cut}", must_fail=True)
    for trial in range(int(os.environ.get("TRIALS", "150"))):
        damaged = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 4))):
            position = rng.randrange(0, flatbuffer_end)
            damaged[position] ^= 1 << rng.randrange(8)
        target = os.path.join(work, "flip.mtc")
        with open(target, "wb") as f:
            f.write(damaged)
        run([run_tool, target] + forward, f"{name} flip trial {trial}", must_fail=False)

shutil.rmtree(work)
for failure in failures:
    print("FAIL:", failure)
print(f"{runs - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
