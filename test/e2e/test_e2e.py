"""End to end: megatron-compile -> megatron-run against the reference forward.

    MEGATRON_FIXTURES=build/test/fixtures MEGATRON_BIN=build/bin \\
        /usr/bin/python3 -m unittest discover -s test/e2e -v

For every good fixture of test/fixtures/gen_fixtures.py's manifest and every
head it carries, the checkpoint is compiled to an artifact, run by
megatron-run on a few inputs, and the outputs are compared with those that
test/reference/reference.py (float64, no code shared with the compiler)
writes for the same command line.  The error is the normwise

    max relative error = max|run - ref| / max(max|ref|, 1e-6)

(elementwise relative error is meaningless for logits near 0).  Each test
prints its worst case.  Nothing is skipped: a missing tool, fixture
directory or artifact is a failure.
"""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'test', 'reference'))
import reference as R  # noqa: E402

FIXTURES = os.environ.get('MEGATRON_FIXTURES', os.path.join(ROOT, 'build', 'test', 'fixtures'))
BIN = os.environ.get('MEGATRON_BIN', os.path.join(ROOT, 'build', 'bin'))

# fp32 artifacts differ from the float64 reference by float32 rounding and
# summation order only.  Half-precision artifacts round weights and
# activations: about 8 unit roundoffs of headroom over what the tiny models
# show (fp16 u = 2^-11, bf16 u = 2^-8), still far below a layout bug (~1).
TOLERANCE = {'f32': 1e-4, 'f16': 5e-3, 'bf16': 3e-2}

# Heads a Megatron-LM BERT checkpoint carries (pooler, LM head, binary head).
MEGATRON_BERT_TASKS = ('base', 'masked-lm', 'pretraining', 'next-sentence', 'causal-lm')

# Inputs in the reference's and megatron-run's shared syntax (tiny vocab 128,
# 64 positions).  Two different rows; BERT pairs have token types, and row 2
# is padded (mask zeros at the end).
ROW1 = '5,17,99,3,42,8,61,2,90,33'
ROW2 = '1,77,23,100,9,54,31,12,0,0'
PADDED = '1,1,1,1,1,1,1,1,1,1;1,1,1,1,1,1,1,1,0,0'
BERT_CASES = {
    'pair-padded': {'--input-ids': f'{ROW1};{ROW2}',
                    '--token-type-ids': '0,0,0,0,0,1,1,1,1,1;0,0,0,1,1,1,1,1,1,1',
                    '--attention-mask': PADDED},
    'ids-only': {'--input-ids': f'{ROW1};{ROW2}'},
    'odd-length': {'--input-ids': '5,17,99,3,42,8,61;1,77,23,100,9,0,0',
                   '--attention-mask': '1,1,1,1,1,1,1;1,1,1,1,1,0,0'},
}
MULTIPLE_CHOICE_CASES = {
    'choices-padded': {'--input-ids': '5,17,99,3|5,17,42,8;1,77,23,100|1,77,9,0',
                       '--token-type-ids': '0,0,1,1|0,0,1,1;0,1,1,1|0,1,1,1',
                       '--attention-mask': '1,1,1,1|1,1,1,1;1,1,1,1|1,1,1,0'},
}
# The decode cases run prefill on all but the last 3 tokens, then 3 decode
# steps; the logits of all tokens must equal the reference's full forward.
GPT2_CASES = {
    'plain': {'--input-ids': f'{ROW1};{ROW2}'},
    'padded': {'--input-ids': f'{ROW1};{ROW2}', '--attention-mask': PADDED},
    'decode-last-3': {'--input-ids': f'{ROW1};{ROW2}', '--decode-last': '3'},
    'odd-length-decode': {'--input-ids': '5,17,99,3,42,8,61;1,77,23,100,9,0,0',
                          '--attention-mask': '1,1,1,1,1,1,1;1,1,1,1,1,0,0', '--decode-last': '2'},
    'padded-decode-last-3': {'--input-ids': f'{ROW1};{ROW2}', '--attention-mask': PADDED,
                             '--decode-last': '3'},
    # prefill_last: the reference's logits at the last position of each row.
    'padded-last-logits': {'--input-ids': f'{ROW1};{ROW2}', '--attention-mask': PADDED,
                           '--last-logits': None},
}
# megatron-run flags that are not model inputs (the reference has none of
# them); None marks a flag without a value.
RUN_ONLY_FLAGS = ('--decode-last', '--last-logits')

ONE_ERROR_LINE = re.compile(r'error: [^\n]+\n')


def fixture(path):
    return os.path.join(FIXTURES, path)


def good_fixtures():
    """Manifest entries the compiler must accept (not bad/, not the logical weights)."""
    with open(fixture('manifest.json')) as f:
        entries = json.load(f)['fixtures']
    return [e for e in entries if 'expected_error' not in e and not e['format'].startswith('logical')]


def family(entry):
    """Which test covers a fixture: (megatron|hf, bert|gpt2)."""
    return ('megatron' if entry['format'].startswith('megatron') else 'hf', entry['model_type'])


def tasks(entry):
    if entry['model_type'] == 'gpt2':
        return ['causal-lm']
    if entry['format'].startswith('megatron'):
        return list(MEGATRON_BERT_TASKS)
    return [entry['task']]                       # an HF directory carries its own head


def cases(entry, task):
    if entry['model_type'] == 'gpt2':
        return GPT2_CASES
    return MULTIPLE_CHOICE_CASES if task == 'multiple-choice' else BERT_CASES


def checkpoint_flags(entry):
    """Flags both the compiler and the reference need for this fixture."""
    return ['--config', fixture(entry['config'])] if 'config' in entry else []


def max_relative_error(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-6))


def tool(name):
    # The sanitizer build has no megatron-compile; it names a plain build's.
    path = os.environ.get('MEGATRON_COMPILE') if name == 'megatron-compile' else None
    path = path or os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f'{path} does not exist: build it (MEGATRON_BIN={BIN})')
    return path


def run(*argv):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300)


class EndToEnd(unittest.TestCase):
    """Shared machinery: compile, run, reference, compare."""

    @classmethod
    def setUpClass(cls):
        cls.compiler, cls.runner = tool('megatron-compile'), tool('megatron-run')
        if not os.path.isfile(fixture('manifest.json')):
            raise AssertionError(f'no manifest.json in MEGATRON_FIXTURES={FIXTURES}: '
                                 'run test/fixtures/gen_fixtures.py (the megatron-fixtures target)')
        cls.work = tempfile.mkdtemp(prefix='megatron-e2e-')
        cls.reference_dirs = {}              # reference argv -> output directory

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        self.worst = (0.0, None)             # (max relative error, what), over the whole test

    def tearDown(self):
        if self.worst[1]:
            print(f'\n{self.id()}: worst max relative error {self.worst[0]:.2e} ({self.worst[1]})', flush=True)

    def workdir(self, *parts):
        path = os.path.join(self.work, *(re.sub(r'[^\w.-]+', '_', p) for p in parts))
        os.makedirs(path, exist_ok=True)
        return path

    # megatron-compile's flags for every artifact and megatron-run's for
    # every case (the target and the backend).
    COMPILE_FLAGS = ()
    RUN_FLAGS = ()

    def compile(self, entry, task, dtype='f32', extra=()):
        """The artifact's path; fails the (sub)test with the compiler's stderr."""
        extra = (*self.COMPILE_FLAGS, *extra)
        artifact = os.path.join(self.workdir(entry['path'], task, dtype, *extra), 'm.mtc')
        dtype_flags = [] if dtype == 'f32' else ['--dtype', dtype]      # f32 is the default
        r = run(self.compiler, fixture(entry['path']), '--task', task, *dtype_flags,
                *checkpoint_flags(entry), *extra, '-o', artifact)
        self.assertEqual(r.returncode, 0, f'megatron-compile {entry["path"]} --task {task} --dtype {dtype}: '
                                          f'{r.stderr.strip()}')
        self.assertTrue(os.path.isfile(artifact), f'megatron-compile wrote no {artifact}')
        return artifact

    def reference(self, entry, task, case, flags=()):
        """Outputs of reference.py (run in-process: its main(), without the torch import per call)."""
        argv = [fixture(entry['path']), '--task', task, *checkpoint_flags(entry), *flags]
        for flag, value in case.items():
            if flag not in RUN_ONLY_FLAGS:
                argv += [flag, value]
        key = tuple(argv)
        if key not in self.reference_dirs:
            out = self.workdir('ref', str(len(self.reference_dirs)))
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                status = R.main(argv + ['--output-dir', out])
            self.assertEqual(status, 0, f'reference.py {" ".join(argv)}: {stderr.getvalue().strip()}')
            self.reference_dirs[key] = out
        out = self.reference_dirs[key]
        return {name[:-len('.npy')]: np.load(os.path.join(out, name)) for name in sorted(os.listdir(out))}

    def run_artifact(self, artifact, case, out):
        argv = [self.runner, artifact, 'forward', '--output-dir', out, *self.RUN_FLAGS]
        for flag, value in case.items():
            argv += [flag] if value is None else [flag, value]
        r = run(*argv)
        self.assertEqual(r.returncode, 0, f'{" ".join(argv[1:])}: {r.stderr.strip()}')

    def check(self, entry, task, artifact, case_name, case, tolerance, reference_flags=()):
        """Runs one case and compares every reference output; returns {name: error}."""
        out = os.path.join(os.path.dirname(artifact), 'out-' + case_name)
        self.run_artifact(artifact, case, out)
        errors = {}
        wanted = self.reference(entry, task, case, reference_flags)
        if '--last-logits' in case:
            wanted = {'last_logits': wanted['logits'][:, -1:]}
        for name, want in wanted.items():
            path = os.path.join(out, name + '.npy')
            self.assertTrue(os.path.isfile(path), f'megatron-run wrote no {name}.npy '
                                                  f'(it wrote {sorted(os.listdir(out))})')
            got = np.load(path)
            self.assertEqual(got.dtype, np.float32, name)
            self.assertEqual(got.shape, want.shape, f'{name} shape')
            errors[name] = err = max_relative_error(got, want)
            what = f'{entry["path"]} {task} {case_name} {name}'
            if err >= self.worst[0]:
                self.worst = (err, what)
            self.assertLessEqual(err, tolerance, f'{what}: max relative error {err:.3e} > {tolerance:.0e}')
        return errors

    def check_fixtures(self, fixture_family, extra=(), reference_flags=()):
        """Every fixture of the family and head it carries, compiled with
        the `extra` flags, against the reference (run with `reference_flags`)."""
        entries = [e for e in good_fixtures() if family(e) == fixture_family]
        self.assertTrue(entries, f'the manifest has no {fixture_family} fixtures')
        for entry in entries:
            for task in tasks(entry):
                with self.subTest(fixture=entry['path'], task=task):
                    artifact = self.compile(entry, task, extra=extra)
                    for case_name, case in cases(entry, task).items():
                        with self.subTest(case=case_name):
                            self.check(entry, task, artifact, case_name + ''.join(extra), case,
                                       TOLERANCE['f32'], reference_flags)


class EveryFamily:
    """One test per fixture family; the class says what check_family does."""

    def test_megatron_bert(self):
        self.check_family(('megatron', 'bert'))

    def test_megatron_gpt2(self):
        self.check_family(('megatron', 'gpt2'))

    def test_hf_bert(self):
        self.check_family(('hf', 'bert'))

    def test_hf_gpt2(self):
        self.check_family(('hf', 'gpt2'))


class Fixtures(EveryFamily, EndToEnd):
    """Every good fixture, every head it carries, at fp32 tolerance."""

    def check_family(self, fixture_family):
        self.check_fixtures(fixture_family)

    def test_every_fixture_has_a_family(self):
        families = {('megatron', 'bert'), ('megatron', 'gpt2'), ('hf', 'bert'), ('hf', 'gpt2')}
        for entry in good_fixtures():
            self.assertIn(family(entry), families, entry['path'])



def gpu_present():
    r = subprocess.run(['nvidia-smi', '-L'], capture_output=True) if shutil.which('nvidia-smi') else None
    return r is not None and r.returncode == 0


class OnGpu:
    """Compiled with --target cuda and run with megatron-run --backend cuda;
    skipped on a machine without an NVIDIA GPU (CI), run by
    scripts/gpu-check.sh."""

    COMPILE_FLAGS = ('--target', 'cuda')
    RUN_FLAGS = ('--backend', 'cuda')

    @classmethod
    def setUpClass(cls):
        if not gpu_present():
            raise unittest.SkipTest('no NVIDIA GPU (nvidia-smi -L)')
        super().setUpClass()


class HalfPrecision(EndToEnd):
    """--dtype f16 / bf16 artifacts against the fp32 weights' reference, looser tolerance."""

    MODELS = (('megatron/bert_v3_tp1', 'pretraining'), ('megatron/gpt2_v3_tp1', 'causal-lm'))
    # 2 x 24 rows: more than the few-row GEMV kernels take (32), so bf16 GEMMs
    # multiply in bf16 (oneDNN) where the CPU can; 2 x 12: more than the
    # GPU's int8 GEMV takes (8), so few that its int8 tensor-core kernel does.
    LONG = {name: {'--input-ids': ';'.join(','.join(str((7 * i + 3 * r) % 97 + 1) for i in range(length))
                                           for r in range(2))}
            for name, length in (('long', 24), ('medium', 12))}

    # int8 weights with 16-bit activations: the CPU multiplies many rows
    # with x rounded to bf16 wherever it has bf16 arithmetic, in an f16
    # artifact too (QuantizedLinear.h); the GPU in the artifact's type.
    W8A16_TOLERANCE = {'f16': TOLERANCE['bf16'], 'bf16': TOLERANCE['bf16']}

    def check_dtype(self, dtype, extra=(), tolerance=None):
        """`extra` compiler flags apply to the reference too."""
        entries = {e['path']: e for e in good_fixtures()}
        for path, task in self.MODELS:
            entry = entries[path]
            with self.subTest(fixture=path, dtype=dtype, extra=extra):
                artifact = self.compile(entry, task, dtype, extra=extra)
                for case_name, case in {**cases(entry, task), **self.LONG}.items():
                    with self.subTest(case=case_name):
                        errors = self.check(entry, task, artifact, case_name, case,
                                            tolerance or TOLERANCE[dtype], reference_flags=extra)
                        print(f'\n--dtype {dtype} {" ".join(extra)} {path} {task} {case_name}: max relative '
                              'error ' + ', '.join(f'{name} {err:.2e}' for name, err in errors.items()),
                              flush=True)

    def test_f16(self):
        self.check_dtype('f16')

    def test_bf16(self):
        self.check_dtype('bf16')

    def test_int8_weights_with_16_bit_activations(self):
        """W8A16: int8 linear weights in a 16-bit artifact, against the
        reference with the same quantized weights (on the GPU the 24 rows of
        'medium' take the tensor-core int8 kernel, 'long' widens the weights
        for cuBLASLt, the others take the GEMV)."""
        for dtype in ('f16', 'bf16'):
            self.check_dtype(dtype, extra=('--quantize', 'int8'), tolerance=self.W8A16_TOLERANCE[dtype])


class CudaFixtures(OnGpu, Fixtures):
    """Every good fixture and head on the GPU, at the fp32 tolerance."""


class CudaHalfPrecision(OnGpu, HalfPrecision):
    """f16 / bf16 artifacts on the GPU (their linears on the tensor cores)."""

    W8A16_TOLERANCE = TOLERANCE


class Int8(EveryFamily, EndToEnd):
    """--quantize int8: every fixture and head against the reference computing
    with the same quantized weights (reference.py --quantize int8, its own
    quantizer). The runtime dequantizes exactly, so the fp32 tolerance holds;
    the quantization error itself is test/quantize's business. So it does
    with --quantize-activations (inputs quantized per row, the products
    summed in int32): only a value within float rounding of a rounding tie
    could go the other way, and none does in these cases."""

    QUANTIZE = ('--quantize', 'int8')
    # Group-wise scales, the tied embedding and LM head, tensor parallelism
    # (each rank quantizes its shard, and with int8 inputs its slice of a
    # row-parallel input), fused and unfused.
    VARIANTS = (('--group-size', '16'), ('--quantize-embeddings',), ('--tp', '2'),
                ('--tp', '2', '--group-size', '8', '--quantize-embeddings'),
                ('--no-fuse', '--tp', '2'), ('--quantize-activations',),
                ('--tp', '2', '--quantize-activations', '--quantize-embeddings'),
                ('--no-fuse', '--quantize-activations'))

    def check_family(self, fixture_family):
        self.check_fixtures(fixture_family, extra=self.QUANTIZE, reference_flags=self.QUANTIZE)

    def test_variants(self):
        entries = {e['path']: e for e in good_fixtures()}
        for path, task in (('megatron/gpt2_v3_tp1', 'causal-lm'), ('megatron/bert_v3_tp2', 'pretraining'),
                           ('hf/megatron_bert_qa', 'question-answering')):
            entry = entries[path]
            for variant in self.VARIANTS:
                with self.subTest(fixture=path, variant=variant):
                    flags = self.QUANTIZE + variant
                    artifact = self.compile(entry, task, extra=flags)
                    reference_flags = tuple(f for f in flags if f != '--no-fuse')
                    for case_name, case in cases(entry, task).items():
                        with self.subTest(case=case_name):
                            self.check(entry, task, artifact, case_name, case, TOLERANCE['f32'],
                                       reference_flags)

    def test_weights_are_int8(self):
        """Linear weights take a quarter of their f32 bytes (plus scales)."""
        entry = {e['path']: e for e in good_fixtures()}['megatron/gpt2_v3_tp1']
        sizes = {}
        for label, extra in (('f32', ()), ('int8', self.QUANTIZE),
                             ('int8-embeddings', self.QUANTIZE + ('--quantize-embeddings',))):
            r = run(self.runner, self.compile(entry, 'causal-lm', extra=extra), 'info', '--json')
            self.assertEqual(r.returncode, 0, r.stderr)
            sizes[label] = json.loads(r.stdout)['weight_bytes']
        # The tiny GPT-2: 2 layers of 12,288 linear weights, a 128 x 32
        # word embedding, 64 x 32 positions and a few vectors.
        self.assertLess(sizes['int8'], 0.55 * sizes['f32'], sizes)
        self.assertLess(sizes['int8-embeddings'], 0.4 * sizes['f32'], sizes)

    def test_info_counts_int8_linears(self):
        """megatron-run info says which linears read int8 weights and which
        quantize their input too."""
        entry = {e['path']: e for e in good_fixtures()}['megatron/gpt2_v3_tp1']
        counts = {}
        for label, extra in (('f32', ()), ('int8', self.QUANTIZE),
                             ('w8a8', self.QUANTIZE + ('--quantize-activations',)),
                             ('w8a8-embeddings', self.QUANTIZE + ('--quantize-activations',
                                                                  '--quantize-embeddings'))):
            r = run(self.runner, self.compile(entry, 'causal-lm', extra=extra), 'info', '--json')
            self.assertEqual(r.returncode, 0, r.stderr)
            prefill = [e for e in json.loads(r.stdout)['entries'] if e['name'] == 'prefill'][0]
            counts[label] = (prefill['linears'], prefill['int8_weight_linears'], prefill['int8_input_linears'])
        # 2 layers of QKV, projection, FC1 and FC2, and the tied LM head.
        self.assertEqual(counts, {'f32': (9, 0, 0), 'int8': (9, 8, 0), 'w8a8': (9, 8, 8),
                                  'w8a8-embeddings': (9, 9, 9)})

    def test_bad_quantize_flags(self):
        entry = {e['path']: e for e in good_fixtures()}['megatron/gpt2_v3_tp1']
        out = os.path.join(self.work, 'bad.mtc')
        for flags, message in ((('--quantize', 'int4'), "unknown --quantize 'int4'"),
                               (('--group-size', '16'), 'need --quantize int8'),
                               (('--quantize', 'int8', '--group-size', '0'), '--group-size must be positive'),
                               (('--quantize', 'int8', '--group-size', '24'),
                                '--group-size 24 does not divide the 32 input columns'),
                               (('--quantize-activations',), 'need --quantize int8'),
                               (('--quantize', 'int8', '--group-size', '16', '--quantize-activations'),
                                '--quantize-activations needs one weight scale per output channel')):
            with self.subTest(flags=flags):
                r = run(self.compiler, fixture(entry['path']), *flags, '-o', out)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertTrue(ONE_ERROR_LINE.fullmatch(r.stderr), r.stderr)
                self.assertIn(message, r.stderr)
                self.assertFalse(os.path.exists(out))


class CudaInt8(OnGpu, Int8):
    """int8 weights on the GPU (its GEMV kernel for decode, widened for
    cuBLASLt beyond), with every variant: int8 embedding tables, tensor
    parallelism, dynamic int8 activations, unfused graphs."""


class Unfused(EveryFamily, EndToEnd):
    """--no-fuse keeps the primitive graph: every fixture and head still
    matches the reference (the default, fused pipeline is Fixtures)."""

    def check_family(self, fixture_family):
        self.check_fixtures(fixture_family, extra=('--no-fuse',))


    def test_fusion_meets_the_step_and_traffic_targets(self):
        """At most 6 steps per layer and at least 2x less activation traffic
        per layer than unfused (megatron-run info --steps)."""
        entries = {e['path']: e for e in good_fixtures()}
        for path, task in (('megatron/gpt2_v3_tp1', 'causal-lm'), ('hf/megatron_bert_qa', 'question-answering'),
                           ('megatron/bert_v3_tp2', 'pretraining')):
            with self.subTest(fixture=path):
                stats = {}
                for label, extra in (('fused', ()), ('unfused', ('--no-fuse',))):
                    artifact = self.compile(entries[path], task, extra=extra)
                    r = run(self.runner, artifact, 'info', '--steps', '--seq', '48', '--json')
                    self.assertEqual(r.returncode, 0, r.stderr)
                    stats[label] = json.loads(r.stdout)[0]
                fused, unfused = stats['fused'], stats['unfused']
                self.assertLessEqual(fused['steps_per_layer'], 6, fused)
                self.assertGreaterEqual(unfused['bytes_per_layer'] / fused['bytes_per_layer'], 2.0,
                                        (fused, unfused))


class CudaUnfused(OnGpu, Unfused):
    """The primitive steps of --no-fuse on the GPU (simple kernels; decode
    steps without graphs)."""


class TensorParallel(EveryFamily, EndToEnd):
    """--tp 2 and --tp 4: every fixture (Megatron checkpoints saved with TP=1
    or TP=2 re-sharded alike) and head against the reference, and against
    the TP=1 artifact's outputs within TP_TOLERANCE."""

    TP_TOLERANCE = 1e-5

    def check_family(self, fixture_family):
        entries = [e for e in good_fixtures() if family(e) == fixture_family]
        self.assertTrue(entries)
        for entry in entries:
            for task in tasks(entry):
                with self.subTest(fixture=entry['path'], task=task):
                    single = self.compile(entry, task)
                    for tp in (2, 4):
                        artifact = self.compile(entry, task, extra=('--tp', str(tp)))
                        for case_name, case in cases(entry, task).items():
                            name = f'{case_name}-tp{tp}'
                            with self.subTest(tp=tp, case=case_name):
                                self.check(entry, task, artifact, name, case, TOLERANCE['f32'])
                                base = os.path.join(os.path.dirname(single), 'out-' + case_name + '-tp1')
                                self.run_artifact(single, case, base)
                                out = os.path.join(os.path.dirname(artifact), 'out-' + name)
                                for npy in sorted(os.listdir(base)):
                                    err = max_relative_error(np.load(os.path.join(out, npy)),
                                                             np.load(os.path.join(base, npy)).astype(np.float64))
                                    self.assertLessEqual(err, self.TP_TOLERANCE,
                                                         f'{entry["path"]} {task} {name} {npy} vs TP=1')


class CudaTensorParallel(OnGpu, TensorParallel):
    """--tp 2 and 4 on the GPU: the ranks as threads on the GPUs there are
    (wrapping around, so one GPU runs them all), their collectives through
    host memory; against the GPU's TP=1 outputs within the GPU's f32
    tolerance (cuBLASLt sums a sharded row's products in another order)."""

    TP_TOLERANCE = TOLERANCE['f32']


class TensorParallelJobs(EndToEnd):
    """Ranks in processes of their own (mpirun) and over NCCL: the TP=1
    numbers, and clear errors when a rank dies or hangs."""

    TP_TOLERANCE = TensorParallel.TP_TOLERANCE

    def mpirun(self, ranks, *argv, env=None):
        mpirun = shutil.which('mpirun')
        self.assertIsNotNone(mpirun, 'mpirun is missing (apt-get install openmpi-bin)')
        env = dict(os.environ if env is None else env)
        if env.get('MEGATRON_SANITIZE'):
            # OpenMPI leaks at exit, from plugins it has unloaded by then;
            # the same code runs leak-checked without mpirun.
            env['ASAN_OPTIONS'] = env.get('ASAN_OPTIONS', '') + ':detect_leaks=0'
        exported = [arg for var in sorted(env) if var == 'LD_PRELOAD' or
                    var.startswith(('MEGATRON_', 'ASAN_', 'UBSAN_', 'LSAN_')) for arg in ('-x', var)]
        # Root in CI containers; more ranks than cores is fine for a test.
        return subprocess.run([mpirun, '--allow-run-as-root', '--oversubscribe', '-np', str(ranks),
                               *exported, self.runner, *map(str, argv)],
                              env=env, capture_output=True, text=True, timeout=300)

    def test_mpirun_gives_the_single_process_numbers(self):
        """One process per rank, collectives over MPI: the TP=1 outputs."""
        entries = {e['path']: e for e in good_fixtures()}
        for path, task, case in (('megatron/gpt2_v3_tp1', 'causal-lm', GPT2_CASES['padded-decode-last-3']),
                                 ('megatron/bert_v3_tp2', 'pretraining', BERT_CASES['pair-padded'])):
            with self.subTest(fixture=path):
                entry = entries[path]
                single = self.compile(entry, task)
                base = os.path.join(os.path.dirname(single), 'out-mpi-base')
                self.run_artifact(single, case, base)
                artifact = self.compile(entry, task, extra=('--tp', '2'))
                out = os.path.join(os.path.dirname(artifact), 'out-mpi')
                argv = [artifact, 'forward', '--output-dir', out]
                for flag, value in case.items():
                    argv += [flag, value]
                r = self.mpirun(2, *argv)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                for npy in sorted(os.listdir(base)):
                    err = max_relative_error(np.load(os.path.join(out, npy)),
                                             np.load(os.path.join(base, npy)).astype(np.float64))
                    self.assertLessEqual(err, self.TP_TOLERANCE, f'{path} {npy} under mpirun')
                # As many processes as ranks, or a clear error (and no hang).
                r = self.mpirun(3, artifact, 'info')
                self.assertNotEqual(r.returncode, 0)
                self.assertIn('has 2 tensor-parallel rank(s), but the MPI communicator has 3', r.stderr)

    def run_with_fault(self, signal_number, *extra):
        """forward over 2 MPI ranks, rank 1 raising `signal_number` on itself in
        its third collective (test/e2e/mpi_fault.c): (result, seconds, output dir)."""
        fault = os.environ.get('MEGATRON_MPI_FAULT')
        if not fault:
            self.skipTest('megatron-run was built without MPI')
        entry = {e['path']: e for e in good_fixtures()}['megatron/gpt2_v3_tp1']
        artifact = self.compile(entry, 'causal-lm', extra=('--tp', '2'))
        out = self.workdir('out-fault', str(signal_number))
        env = dict(os.environ, MEGATRON_FAULT_RANK='1', MEGATRON_FAULT_CALL='3',
                   MEGATRON_FAULT_SIGNAL=str(signal_number), LD_PRELOAD=fault)
        # A sanitized megatron-run wants ASan's runtime first among its libraries.
        env['ASAN_OPTIONS'] = env.get('ASAN_OPTIONS', '') + ':verify_asan_link_order=0'
        start = time.monotonic()
        r = self.mpirun(2, artifact, 'forward', '--input-ids', '5,6,7,8,9', '--decode-last', '2',
                        '--output-dir', out, *extra, env=env)
        return r, time.monotonic() - start, out

    def test_a_rank_that_dies_mid_collective_ends_the_job(self):
        """The other rank is waiting in that collective: mpirun ends the job
        at once, names the dead rank, and no output is written."""
        r, seconds, out = self.run_with_fault(signal.SIGKILL)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r'rank 1 .*signal 9', r.stderr)
        self.assertLess(seconds, 60)
        self.assertEqual(os.listdir(out), [])

    def test_a_rank_that_hangs_mid_collective_times_out(self):
        """A stopped rank never answers; the others give up after
        --collective-timeout with one clear error instead of hanging."""
        r, seconds, out = self.run_with_fault(signal.SIGSTOP, '--collective-timeout', '2')
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"error: all-reduce '\w+': MPI: the other ranks did not answer within 2 s "
                                   r'\(--collective-timeout\); a rank hangs or has died\n')
        self.assertLess(seconds, 60)
        self.assertEqual(os.listdir(out), [])

    def test_nccl_collectives_run_or_say_why_not(self):
        """--collectives nccl, for the CPU backend's ranks (staged through
        the devices) and the CUDA backend's (on device memory): the TP=1
        numbers where there are CUDA devices for the ranks; elsewhere one
        clear error (no GPU, no NCCL build)."""
        entry = {e['path']: e for e in good_fixtures()}['megatron/gpt2_v3_tp1']
        case = GPT2_CASES['padded']
        single = self.compile(entry, 'causal-lm')
        base = os.path.join(os.path.dirname(single), 'out-nccl-base')
        self.run_artifact(single, case, base)
        for compile_flags, run_flags, tolerance in (((), (), self.TP_TOLERANCE),
                                                    (OnGpu.COMPILE_FLAGS, OnGpu.RUN_FLAGS,
                                                     TOLERANCE['f32'])):
            with self.subTest(backend=run_flags):
                artifact = self.compile(entry, 'causal-lm', extra=('--tp', '2', *compile_flags))
                out = os.path.join(os.path.dirname(artifact), 'out-nccl')
                argv = [artifact, 'forward', '--collectives', 'nccl', *run_flags, '--output-dir', out]
                for flag, value in case.items():
                    argv += [flag, value]
                r = run(self.runner, *argv)
                if r.returncode != 0:
                    self.assertTrue(ONE_ERROR_LINE.fullmatch(r.stderr), r.stderr)
                    self.assertRegex(r.stderr, r'CUDA|NCCL')
                    continue
                err = max_relative_error(np.load(os.path.join(out, 'logits.npy')),
                                         np.load(os.path.join(base, 'logits.npy')).astype(np.float64))
                self.assertLessEqual(err, tolerance)

    def test_degree_must_divide_the_model(self):
        entry = {e['path']: e for e in good_fixtures()}['megatron/gpt2_v3_tp1']
        r = run(self.compiler, fixture(entry['path']), '--tp', '3', '-o', os.path.join(self.work, 'x.mtc'))
        self.assertEqual(r.returncode, 1)
        self.assertIn('--tp 3 does not divide the model', r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.work, 'x.mtc')))


class Info(EndToEnd):
    """`megatron-run --help` and `info --json`: what scripts read."""

    def test_help(self):
        r = run(self.runner, '--help')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('megatron-run ARTIFACT forward', r.stdout)

    def test_info_json(self):
        entries = {e['path']: e for e in good_fixtures()}
        for path, task, want in (('megatron/bert_v3_tp1', 'pretraining', {'forward'}),
                                 ('megatron/gpt2_v3_tp1', 'causal-lm', {'prefill', 'prefill_last', 'decode'})):
            with self.subTest(fixture=path):
                r = run(self.runner, self.compile(entries[path], task), 'info', '--json')
                self.assertEqual(r.returncode, 0, r.stderr)
                info = json.loads(r.stdout)
                self.assertEqual({e['name'] for e in info['entries']}, want)
                self.assertGreaterEqual(info['max_sequence'], 1)
                self.assertGreaterEqual(info['max_batch'], 1)
                for entry in info['entries']:
                    self.assertEqual(entry['inputs'][0], 'input_ids')


class Errors(EndToEnd):
    """Bad input and bad artifacts: exit status 1, exactly one `error:` line, no crash."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.entries = {e['path']: e for e in good_fixtures()}
        with open(fixture('manifest.json')) as f:
            cls.max_positions = json.load(f)['tiny_config']['max_positions']

    def artifact(self, path, task):
        return self.compile(self.entries[path], task)

    def assert_one_error(self, *argv):
        r = run(self.runner, *argv)
        what = 'megatron-run ' + ' '.join(str(a) for a in argv)
        self.assertEqual(r.returncode, 1, f'{what}: exit status {r.returncode}, stderr {r.stderr!r}')
        self.assertTrue(ONE_ERROR_LINE.fullmatch(r.stderr), f'{what}: stderr {r.stderr!r}')
        return r.stderr

    def forward_error(self, artifact, *flags):
        return self.assert_one_error(artifact, 'forward', '--output-dir', self.workdir('out'), *flags)

    def medium_checkpoint(self):
        """A GPT-2 of 345M's width with 4 layers (~100M parameters, fp16),
        generated once: compiling it takes seconds and needs about 1 GB."""
        path = os.path.join(self.work, 'medium-gpt2')
        if not os.path.isdir(path):
            sys.path.insert(0, os.path.join(ROOT, 'test', 'fixtures'))
            import gen_fixtures as G  # noqa: E402
            G.generate_large('gpt2', path, dict(G.LARGE['gpt2'], layers=4))
        return path

    def test_compile_out_of_memory(self):
        """megatron-compile under `ulimit -v` too small for the model: one
        clear error and no artifact; with room enough it compiles."""
        import resource
        checkpoint, out = self.medium_checkpoint(), os.path.join(self.workdir('oom'), 'm.mtc')

        def limited(megabytes):
            def limit():
                resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))
            return subprocess.run([self.compiler, checkpoint, '-o', out], capture_output=True,
                                  text=True, timeout=300, preexec_fn=limit)
        r = limited(700)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(ONE_ERROR_LINE.fullmatch(r.stderr), r.stderr)
        self.assertIn('out of memory', r.stderr)
        self.assertEqual(os.listdir(os.path.dirname(out)), [])
        r = limited(4096)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.isfile(out))

    def test_interrupted_compile_leaves_no_artifact(self):
        """A compile stopped while it writes the artifact (SIGINT, SIGTERM,
        SIGKILL) never leaves a file at the output path; the catchable
        signals also remove the partial one."""
        checkpoint = self.medium_checkpoint()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            with self.subTest(signal=sig.name):
                out = os.path.join(self.workdir('interrupted', sig.name), 'm.mtc')
                partial = out + '.partial'
                p = subprocess.Popen([self.compiler, checkpoint, '-o', out],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 120
                while not os.path.exists(partial) and p.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.001)
                self.assertTrue(os.path.exists(partial), 'the compile never wrote OUT.partial')
                p.send_signal(sig)
                self.assertNotEqual(p.wait(timeout=60), 0)
                self.assertFalse(os.path.exists(out), f'{sig.name} left {out}')
                if sig != signal.SIGKILL:
                    self.assertFalse(os.path.exists(partial), f'{sig.name} left {partial}')

    def test_address_space_limit(self):
        """Under `ulimit -v` too small for OpenBLAS's GEMM buffers, one clear
        error (it used to spin forever in OpenBLAS's load-time constructor);
        with room enough, the same command works."""
        if os.environ.get('MEGATRON_SANITIZE'):
            self.skipTest('AddressSanitizer maps its shadow memory up front, so no address-space '
                          'limit leaves room for it')
        import resource
        gpt2 = self.artifact('megatron/gpt2_v3_tp1', 'causal-lm')
        argv = [self.runner, gpt2, 'forward', '--input-ids', '1,2,3', '--output-dir', self.workdir('out')]

        def limited(megabytes):
            def limit():
                resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))
            return subprocess.run(argv, capture_output=True, text=True, timeout=60, preexec_fn=limit)
        r = limited(400)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(ONE_ERROR_LINE.fullmatch(r.stderr), r.stderr)
        self.assertIn('not enough address space for OpenBLAS', r.stderr)
        r = limited(65536)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_bad_inputs(self):
        bert = self.artifact('megatron/bert_v3_tp1', 'masked-lm')
        too_long = ','.join(['5'] * (self.max_positions + 1))
        cases = {
            'out-of-vocab id': ['--input-ids', '5,17,100000'],
            'negative id': ['--input-ids', '5,-1,3'],
            'longer than max positions': ['--input-ids', too_long],
            'ragged batch without mask': ['--input-ids', '1,2,3;4,5'],
            'ragged mask': ['--input-ids', '1,2,3;4,5,6', '--attention-mask', '1,1,1;1,1'],
            'mask shape differs': ['--input-ids', '1,2,3;4,5,6', '--attention-mask', '1,1,1'],
            'token type out of range': ['--input-ids', '1,2,3', '--token-type-ids', '0,1,7'],
            'not an integer': ['--input-ids', '1,two,3'],
            'trailing junk': ['--input-ids', '1,2,3x'],
            'empty input': ['--input-ids', ''],
            'empty row': ['--input-ids', '1,2;'],
            'decode-last on BERT': ['--input-ids', '1,2,3,4', '--decode-last', '1'],
            'last-logits on BERT': ['--input-ids', '1,2,3,4', '--last-logits'],
        }
        for name, flags in cases.items():
            with self.subTest(name):
                self.forward_error(bert, *flags)
        gpt2 = self.artifact('megatron/gpt2_v3_tp1', 'causal-lm')
        self.assertIn('do not combine', self.forward_error(gpt2, '--input-ids', '1,2,3,4', '--last-logits',
                                                           '--decode-last', '1'))
        # Checked before any step runs (a decode step's cache stays as it
        # was) also where the embedding table is int8, read with its scales.
        int8 = self.compile(self.entries['megatron/gpt2_v3_tp1'], 'causal-lm',
                            extra=('--quantize', 'int8', '--quantize-embeddings'))
        self.assertIn('input_ids 100000 at position 2 is outside',
                      self.forward_error(int8, '--input-ids', '1,2,100000'))

    def test_decode_past_the_context(self):
        # Prefill fits; the decode steps then run past the position table.
        gpt2 = self.artifact('megatron/gpt2_v3_tp1', 'causal-lm')
        ids = ','.join(['5'] * (self.max_positions + 2))
        self.forward_error(gpt2, '--input-ids', ids, '--decode-last', '4')

    def test_bad_artifacts(self):
        good = self.artifact('megatron/bert_v3_tp1', 'masked-lm')
        with open(good, 'rb') as f:
            data = f.read()
        truncated = os.path.join(self.workdir('bad'), 'truncated.mtc')
        with open(truncated, 'wb') as f:
            f.write(data[:len(data) // 2])
        flipped = os.path.join(self.workdir('bad'), 'flipped-magic.mtc')
        with open(flipped, 'wb') as f:
            f.write(bytes([data[0] ^ 0xFF]) + data[1:])
        empty = os.path.join(self.workdir('bad'), 'empty.mtc')
        open(empty, 'wb').close()
        # The header's format version (after the 8-byte magic), one ahead.
        newer = os.path.join(self.workdir('bad'), 'newer.mtc')
        version = int.from_bytes(data[8:12], 'little')
        with open(newer, 'wb') as f:
            f.write(data[:8] + (version + 1).to_bytes(4, 'little') + data[12:])
        artifacts = {'missing': os.path.join(self.work, 'does-not-exist.mtc'), 'truncated': truncated,
                     'flipped magic byte': flipped, 'empty file': empty, 'a directory': self.work,
                     'a newer format version': newer}
        for name, path in artifacts.items():
            with self.subTest(name):
                self.forward_error(path, '--input-ids', '1,2,3')
                self.assert_one_error(path, 'info')
        self.assertIn(f'format version {version + 1}', self.assert_one_error(newer, 'info'))
        self.assertIn('--backend takes cpu, cuda or cuda:N',
                      self.assert_one_error(good, 'info', '--backend', 'gpu'))
        if not gpu_present():
            # No driver, or a runtime built without the toolkit: either way it says CUDA.
            self.assertIn('CUDA', self.assert_one_error(good, 'info', '--backend', 'cuda'))


if __name__ == '__main__':
    unittest.main()
