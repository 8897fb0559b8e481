"""int8 weight-only quantization on models trained on real text.

    MEGATRON_TRAINED=build/test/trained MEGATRON_BIN=build/bin \\
        /usr/bin/python3 -m unittest discover -s test/quantize -v

test/fixtures/train_tiny.py trains a tiny Megatron-GPT2 and Megatron-BERT
on Debian's license texts and writes held-out inputs (heldout.json) and the
trained models' own held-out figures (summary.json).  Each model is compiled
to an f32 artifact and to int8 ones (--quantize int8, with --tp 2, with
--group-size 32, and for GPT-2 with --quantize-embeddings; and W8A8 ones,
--quantize-activations, alone and with --tp 2, whose BERT agreement is held
to that of PyTorch's own dynamic int8 on the same model), and to bf16 ones
(--dtype bf16, with and without --quantize int8: int8 with bf16 activations
is held to bf16 as int8 with f32 ones is to f32); megatron-run
forward runs the held-out ids through each.  Random weights would not do:
their logits have none of the structure (confident, peaked predictions,
outlier channels) that makes quantization error matter.

Checks: the f32 artifact reproduces the trained model's held-out loss
(within 1e-3 relative, so it is that model); GPT-2 int8 perplexity within
+1% of the f32 artifact's; BERT masked-token top-1 agreement >= 99% and mean
logits cosine >= 0.999 against the f32 artifact; int8 artifacts no larger
than int8 storage of their parameter counts allows.  Every test prints its
figures.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'test', 'reference'))
import reference as R  # noqa: E402
TRAINED = os.environ.get('MEGATRON_TRAINED', os.path.join(ROOT, 'build', 'test', 'trained'))
BIN = os.environ.get('MEGATRON_BIN', os.path.join(ROOT, 'build', 'bin'))

# The targets.
PERPLEXITY_RATIO = 1.01
TOP1_AGREEMENT = 0.99
COSINE = 0.999
# W8A8 (--quantize-activations) rounds every linear's input to 8 bits as
# well, which the weight-only targets do not cover (the tiny BERT's
# masked tokens have near-ties, f32 top-1 - top-2 margins of 0.0001-0.03
# logits, that it flips more often). Its BERT agreement target is that of
# PyTorch's own dynamic int8 on the same model; perplexity and cosine keep
# theirs.
# f32 artifact vs the float32 torch model that was trained: summation order only.
SAME_MODEL_RTOL = 1e-3

INT8 = ('--quantize', 'int8')
VARIANTS = {
    'f32': (),
    'int8': INT8,
    'int8-tp2': INT8 + ('--tp', '2'),
    'int8-group32': INT8 + ('--group-size', '32'),
    'int8-embeddings': INT8 + ('--quantize-embeddings',),
    'w8a8': INT8 + ('--quantize-activations',),
    'w8a8-tp2': INT8 + ('--quantize-activations', '--tp', '2'),
    # W8A16 in the narrow sense: bf16 everywhere else (what bench/cpu.sh
    # measures where the CPU has bf16), held to the bf16 artifact.
    'bf16': ('--dtype', 'bf16'),
    'int8-bf16': INT8 + ('--dtype', 'bf16'),
    'int8-bf16-decoded': INT8 + ('--dtype', 'bf16'),
}
# megatron-run's flags by variant: the second half of each held-out row
# decoded one token at a time (32 rows a step: the few-row kernels, int16
# rows on CPUs with AVX512-VNNI).
RUN_FLAGS = {'int8-bf16-decoded': ('--decode-last', '64')}
TASK = {'gpt2': 'causal-lm', 'bert': 'masked-lm'}
# The smallest group tested: at most one f32 scale per 32 int8 weights.
SMALLEST_GROUP = 32
# Slack per checkpoint tensor for the alignment of it and its scales.
ALIGNMENT_SLACK = 2 * 64


def run(*argv):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600)


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def perplexity(logits, ids):
    """exp(mean NLL of each next token), over all rows of the logits."""
    logp = log_softmax(logits[:, :-1].astype(np.float64))
    nll = -np.take_along_axis(logp, ids[:, 1:, None], axis=-1)
    return float(np.exp(nll.mean()))


@contextlib.contextmanager
def torch_dynamic_linears(names, weights):
    """reference.py's forward with PyTorch's dynamic int8 for the linears
    `names` (quantized::linear_dynamic: per-channel qint8 weights, scale
    max|w| / 127, the input quantized on every call) instead of its own
    arithmetic."""
    packed = {}
    for name in names:
        w = weights[name].float()
        scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        q = torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
        packed[name] = torch.ops.quantized.linear_prepack(q, None)
    marked, linear = R._marked, R.linear

    def mark(model, name, tensor):
        if name in packed:
            tensor.torch_packed = packed[name]
        return tensor

    def dynamic_linear(x, weight, bias=None):
        p = getattr(weight, 'torch_packed', None)
        if p is None:
            return linear(x, weight, bias)
        y = torch.ops.quantized.linear_dynamic(x.float().contiguous(), p).double()
        return y if bias is None else y + bias

    R._marked, R.linear = mark, dynamic_linear
    try:
        yield
    finally:
        R._marked, R.linear = marked, linear


def masked_logits(logits, positions):
    """[rows, masked, vocab] -> [rows * masked, vocab] at the masked positions."""
    return np.take_along_axis(logits, positions[:, :, None], axis=1).reshape(-1, logits.shape[-1])


class TrainedModels(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for name in ('heldout.json', 'summary.json'):
            if not os.path.isfile(os.path.join(TRAINED, name)):
                raise AssertionError(f'no {name} in MEGATRON_TRAINED={TRAINED}: run '
                                     'test/fixtures/train_tiny.py (the trained-models test)')
        with open(os.path.join(TRAINED, 'heldout.json')) as f:
            cls.heldout = json.load(f)
        with open(os.path.join(TRAINED, 'summary.json')) as f:
            cls.summary = json.load(f)
        cls.tools = {}
        for name in ('megatron-compile', 'megatron-run'):
            path = os.path.join(BIN, name)
            if not os.access(path, os.X_OK):
                raise AssertionError(f'{path} does not exist: build it (MEGATRON_BIN={BIN})')
            cls.tools[name] = path
        cls.work = tempfile.mkdtemp(prefix='megatron-quantize-')
        cls.artifacts, cls.outputs = {}, {}          # (model, variant) -> path / logits

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def artifact(self, model, variant):
        key = (model, variant)
        if key not in self.artifacts:
            path = os.path.join(self.work, f'{model}-{variant}.mtc')
            rows = len(self.heldout[model]['input_ids'])
            argv = [self.tools['megatron-compile'], os.path.join(TRAINED, model), '--task', TASK[model],
                    '--max-batch', rows, *VARIANTS[variant], '-o', path]
            r = run(*argv)
            self.assertEqual(r.returncode, 0, f'{" ".join(map(str, argv[1:]))}: {r.stderr.strip()}')
            self.artifacts[key] = path
        return self.artifacts[key]

    def logits(self, model, variant):
        """The artifact's logits for all held-out rows, one megatron-run call."""
        key = (model, variant)
        if key not in self.outputs:
            out = os.path.join(self.work, f'{model}-{variant}-out')
            ids = ';'.join(','.join(map(str, row)) for row in self.heldout[model]['input_ids'])
            r = run(self.tools['megatron-run'], self.artifact(model, variant), 'forward',
                    '--input-ids', ids, '--output-dir', out, *RUN_FLAGS.get(variant, ()))
            self.assertEqual(r.returncode, 0, f'megatron-run {model}-{variant} forward: {r.stderr.strip()}')
            logits = np.load(os.path.join(out, 'logits.npy'))
            rows = np.asarray(self.heldout[model]['input_ids'])
            self.assertEqual(logits.shape[:2], rows.shape, f'{model}-{variant} logits shape')
            self.outputs[key] = logits
        return self.outputs[key]

    def torch_dynamic_logits(self, model):
        """The trained model's logits with PyTorch's dynamic int8 linears (the
        ones --quantize int8 quantizes), for all held-out rows."""
        key = (model, 'torch-dynamic-int8')
        if key not in self.outputs:
            loaded = R.load(os.path.join(TRAINED, model))
            quantized = R.quantize_int8(loaded, activations=True).int8_inputs
            with torch_dynamic_linears(quantized, loaded.weights):
                out = R.forward(loaded, TASK[model], self.heldout[model]['input_ids'])
            self.outputs[key] = out['logits']
        return self.outputs[key]

    def report(self, text):
        print(f'\n{self.id().split(".")[-1]}: {text}', flush=True)

    # GPT-2 --------------------------------------------------------------

    def gpt2_perplexity(self, variant):
        return perplexity(self.logits('gpt2', variant), np.asarray(self.heldout['gpt2']['input_ids']))

    def check_gpt2(self, variant, unquantized='f32'):
        base, quantized = self.gpt2_perplexity(unquantized), self.gpt2_perplexity(variant)
        self.report(f'held-out perplexity {unquantized} {base:.4f}, {variant} {quantized:.4f} '
                    f'(x{quantized / base:.5f}; limit x{PERPLEXITY_RATIO})')
        self.assertLessEqual(quantized, PERPLEXITY_RATIO * base)

    def test_gpt2_f32_artifact_is_the_trained_model(self):
        trained = self.summary['gpt2']['heldout']['perplexity']
        got = self.gpt2_perplexity('f32')
        self.report(f'held-out perplexity: f32 artifact {got:.4f}, trained torch model {trained:.4f} '
                    f'(uniform {self.summary["gpt2"]["uniform_perplexity"]})')
        self.assertLessEqual(abs(got / trained - 1), SAME_MODEL_RTOL)

    def test_gpt2_int8_perplexity(self):
        self.check_gpt2('int8')

    def test_gpt2_int8_tp2_perplexity(self):
        self.check_gpt2('int8-tp2')

    def test_gpt2_int8_group32_perplexity(self):
        self.check_gpt2('int8-group32')

    def test_gpt2_int8_embeddings_perplexity(self):
        self.check_gpt2('int8-embeddings')

    def test_gpt2_w8a8_perplexity(self):
        self.check_gpt2('w8a8')

    def test_gpt2_w8a8_tp2_perplexity(self):
        self.check_gpt2('w8a8-tp2')

    def test_gpt2_int8_bf16_perplexity(self):
        self.check_gpt2('int8-bf16', 'bf16')

    def test_gpt2_int8_bf16_decoded_perplexity(self):
        self.check_gpt2('int8-bf16-decoded', 'bf16')

    # BERT ---------------------------------------------------------------

    def bert_masked(self, variant):
        return masked_logits(self.logits('bert', variant), np.asarray(self.heldout['bert']['masked_positions']))

    def agreement_and_cosine(self, base, quantized):
        """Masked-token top-1 agreement, the tokens that differ, and the mean logits cosine."""
        base, quantized = base.astype(np.float64), quantized.astype(np.float64)
        differ = base.argmax(-1) != quantized.argmax(-1)
        cosine = float(((base * quantized).sum(-1) /
                        (np.linalg.norm(base, axis=-1) * np.linalg.norm(quantized, axis=-1))).mean())
        return 1 - float(differ.mean()), differ, cosine

    def torch_dynamic_agreement(self):
        """PyTorch's dynamic int8 against the f32 artifact: (agreement, cosine)."""
        torch_masked = masked_logits(self.torch_dynamic_logits('bert'),
                                     np.asarray(self.heldout['bert']['masked_positions']))
        agreement, _, cosine = self.agreement_and_cosine(self.bert_masked('f32'), torch_masked)
        self.report(f'PyTorch dynamic int8: top-1 agreement {agreement:.4f}, mean logits cosine {cosine:.7f}')
        return agreement, cosine

    def check_bert(self, variant, top1_agreement=TOP1_AGREEMENT, unquantized='f32'):
        base = self.bert_masked(unquantized).astype(np.float64)
        agreement, differ, cosine = self.agreement_and_cosine(base, self.bert_masked(variant))
        # A tiny model has near-ties; where the top-1 changed, how close was it in f32?
        top2 = np.sort(base[differ], axis=-1)[:, -2:]
        margins = ', '.join(f'{m:.4f}' for m in sorted(top2[:, 1] - top2[:, 0]))
        self.report(f'{len(base)} masked tokens against {unquantized}: top-1 agreement {agreement:.4f} '
                    f'(limit {top1_agreement:.4f}; '
                    f'{int(differ.sum())} differ, {unquantized} top-1 - top-2 margins there: {margins or "-"}), '
                    f'mean logits cosine {cosine:.7f} (limit {COSINE})')
        self.assertGreaterEqual(agreement, top1_agreement)
        self.assertGreaterEqual(cosine, COSINE)

    def test_bert_f32_artifact_is_the_trained_model(self):
        trained = self.summary['bert']['heldout']
        logits = self.bert_masked('f32')
        truth = np.asarray(self.heldout['bert']['masked_ids']).reshape(-1)
        logp = log_softmax(logits.astype(np.float64))
        loss = float(-logp[np.arange(len(truth)), truth].mean())
        accuracy = float((logits.argmax(-1) == truth).mean())
        self.report(f'held-out masked-token loss: f32 artifact {loss:.4f}, trained torch model '
                    f'{trained["masked_loss"]:.4f}; top-1 accuracy {accuracy:.4f} '
                    f'(torch {trained["masked_top1_accuracy"]:.4f})')
        self.assertLessEqual(abs(loss / trained['masked_loss'] - 1), SAME_MODEL_RTOL)

    def test_bert_int8_agreement(self):
        self.check_bert('int8')

    def test_bert_int8_tp2_agreement(self):
        self.check_bert('int8-tp2')

    def test_bert_int8_group32_agreement(self):
        self.check_bert('int8-group32')

    def test_bert_w8a8_agreement(self):
        self.check_bert('w8a8', self.torch_dynamic_agreement()[0])

    def test_bert_w8a8_tp2_agreement(self):
        self.check_bert('w8a8-tp2', self.torch_dynamic_agreement()[0])

    def test_bert_int8_bf16_agreement(self):
        self.check_bert('int8-bf16', unquantized='bf16')

    # Sizes --------------------------------------------------------------

    def check_size(self, model, variant, quantized_names):
        """The f32 artifact is a fixed part (plan, tokenizer) plus 4 bytes per
        parameter.  int8 stores each quantized weight in 1 byte plus at most
        one f32 scale per SMALLEST_GROUP weights, the other parameters as
        before; the bound allows that plus alignment, so an int8 artifact that
        kept an f32 copy of anything it quantized fails."""
        ck = self.summary[model]['checkpoint']
        quantized = sum(ck[name] for name in quantized_names)
        f32 = os.path.getsize(self.artifact(model, 'f32'))
        int8 = os.path.getsize(self.artifact(model, variant))
        fixed = f32 - 4 * ck['parameters']
        bound = (fixed + quantized * (1 + 4 / SMALLEST_GROUP) + 4 * (ck['parameters'] - quantized)
                 + ALIGNMENT_SLACK * ck['tensors'])
        self.report(f'f32 {f32} bytes, {variant} {int8} bytes (x{int8 / f32:.3f}; bound {int(bound)} = '
                    f'x{bound / f32:.3f} for {quantized} of {ck["parameters"]} parameters in int8)')
        self.assertLessEqual(int8, bound)

    def test_gpt2_int8_size(self):
        self.check_size('gpt2', 'int8', ['layer_linear_weights'])

    def test_gpt2_int8_embeddings_size(self):
        self.check_size('gpt2', 'int8-embeddings', ['layer_linear_weights', 'word_embedding'])

    def test_bert_int8_size(self):
        self.check_size('bert', 'int8', ['layer_linear_weights'])


if __name__ == '__main__':
    unittest.main()
