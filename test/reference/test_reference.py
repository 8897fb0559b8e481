"""Self-consistency tests of the reference forward pass (reference.py).

    MEGATRON_FIXTURES=build/test/fixtures /usr/bin/python3 -m unittest discover -s test/reference

MEGATRON_FIXTURES is a directory written by test/fixtures/gen_fixtures.py.
Without it only the fixture-free tests (numerics, the hand-computed attention)
run; the others are skipped with a message saying so.

Every fixture of one logical model holds the same weights (see the
generator), so whatever the format, the reference must give the same outputs.
Outputs are compared by the normwise relative error max|a - b| / max|b|
(elementwise relative error is meaningless for logits near 0).
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

FIXTURES = os.environ.get('MEGATRON_FIXTURES')
NEEDS_FIXTURES = unittest.skipUnless(
    FIXTURES, 'MEGATRON_FIXTURES is not set: point it at a directory written by '
              'test/fixtures/gen_fixtures.py (e.g. build/test/fixtures) to run the checkpoint tests')

# Same weights, same maths: the only differences are float64 summation order
# (none in practice) and the final float32 cast.
SAME_MODEL_TOL = 1e-5
# Half-precision fixtures hold the fp32 logical weights rounded once to the
# format.  Rounding perturbs every weight by at most the unit roundoff u
# (bf16: 8 significant bits, u = 2^-8; fp16: 11 bits, u = 2^-11); the errors
# have random signs; with unit-variance linear layers the two-layer tiny model
# amplifies them a few times (measured: bf16 0.020, fp16 0.0004 of the output
# scale).  8u leaves room for other inputs while still failing on any layout
# bug (those give errors of order 1).  The same fixtures are also compared
# exactly with the logical weights rounded to their dtype.
HALF_TOL = {torch.bfloat16: 8 * 2.0 ** -8, torch.float16: 8 * 2.0 ** -11}
# The fixtures' linear weights have std 1/sqrt(fan_in), so GELU inputs are of
# order 1 and choosing the other GELU kind moves the outputs by far more than
# the 1e-4 tolerance of the end-to-end tests: "the GELU kind was honoured" is
# asserted as a difference above that tolerance.
GELU_VISIBLE = 1e-4

RNG = np.random.RandomState(1234)
IDS = RNG.randint(0, 128, size=(3, 12))          # 3 sequences of 12 tokens, tiny vocab 128
TOKEN_TYPES = (np.arange(12)[None, :] >= 6).astype(np.int64).repeat(3, 0)


def rel_err(got, want):
    return float(np.abs(np.asarray(got, np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


def fixture(path):
    return os.path.join(FIXTURES, path)


def manifest():
    with open(fixture('manifest.json')) as f:
        return json.load(f)


def logical_model(name, **config):
    """A Model straight from logical/<name>.safetensors (already canonical names)."""
    tiny = manifest()['tiny_config']
    model_type = name.split('-')[0]
    weights = R.read_safetensors(fixture(f'logical/{name}.safetensors'))
    base = dict(model_type=model_type, hidden=tiny['hidden'], layers=tiny['layers'], heads=tiny['heads'],
                ffn=tiny['ffn'], max_positions=tiny['max_positions'], vocab_rows=tiny['vocab'],
                vocab_size=tiny['vocab'], type_vocab=tiny['type_vocab'] if model_type == 'bert' else 0,
                eps=tiny['layernorm_epsilon'], gelu='tanh', head_gelu='erf',
                causal=model_type == 'gpt2', num_labels=0)
    base.update(config)
    return R.Model(R.Config(**base), weights, 'masked-lm' if model_type == 'bert' else 'causal-lm')


class Numerics(unittest.TestCase):
    """The hand-written primitives against torch.nn.functional."""

    x = torch.linspace(-6.0, 6.0, 241, dtype=torch.float64).reshape(1, 241)

    def test_gelu_erf(self):
        torch.testing.assert_close(R.gelu_erf(self.x), F.gelu(self.x), rtol=1e-14, atol=1e-15)

    def test_gelu_tanh(self):
        torch.testing.assert_close(R.gelu_tanh(self.x), F.gelu(self.x, approximate='tanh'),
                                   rtol=1e-14, atol=1e-15)

    def test_gelu_kinds_differ(self):
        # Choosing the wrong kind must be visible at fp32 tolerance.
        self.assertGreater((R.gelu_erf(self.x) - R.gelu_tanh(self.x)).abs().max().item(), 1e-4)

    def test_layer_norm(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 7, 32, generator=g, dtype=torch.float64) * 3 + 1
        w = torch.randn(32, generator=g, dtype=torch.float64)
        b = torch.randn(32, generator=g, dtype=torch.float64)
        for eps in (1e-5, 1e-12):
            torch.testing.assert_close(R.layer_norm(x, w, b, eps), F.layer_norm(x, (32,), w, b, eps),
                                       rtol=1e-12, atol=1e-12)

    def test_masked_softmax(self):
        g = torch.Generator().manual_seed(1)
        scores = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64) * 10
        allowed = torch.rand(2, 1, 5, 5, generator=g) > 0.3
        allowed[..., 0] = True                          # every row keeps one key
        want = F.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1)
        torch.testing.assert_close(R.masked_softmax(scores, allowed), want, rtol=1e-13, atol=1e-15)

    def test_fully_masked_row_is_uniform(self):
        scores = torch.tensor([[3.0, -1.0, 2.0]], dtype=torch.float64)
        probs = R.masked_softmax(scores, torch.zeros(1, 3, dtype=torch.bool))
        torch.testing.assert_close(probs, torch.full((1, 3), 1 / 3, dtype=torch.float64))


class HandComputedAttention(unittest.TestCase):
    """One attention layer on a 2-token input, against the formulas written out per scalar."""

    hidden, heads = 4, 2

    def setUp(self):
        g = torch.Generator().manual_seed(7)
        h = self.hidden

        def rand(*shape):
            return torch.randn(*shape, generator=g, dtype=torch.float64)

        self.w = {f'{n}.{p}': rand(h, h) if p == 'weight' else rand(h)
                  for n in ('query', 'key', 'value', 'attn_out') for p in ('weight', 'bias')}
        self.x = rand(1, 2, h)

    def explicit(self, allowed):
        """out_i = Wo . concat_h(sum_j p_hij v_hj) + bo, p_hij = exp(s_hij) / sum_j' exp(s_hij'),
        s_hij = q_hi . k_hj / sqrt(d) over the allowed (i, j), all as Python floats."""
        h, d = self.hidden, self.hidden // self.heads
        x = self.x[0].tolist()

        def affine(name, vec):
            w, b = self.w[name + '.weight'].tolist(), self.w[name + '.bias'].tolist()
            return [sum(w[o][i] * vec[i] for i in range(h)) + b[o] for o in range(h)]

        q = [affine('query', x[t]) for t in range(2)]
        k = [affine('key', x[t]) for t in range(2)]
        v = [affine('value', x[t]) for t in range(2)]
        out = []
        for i in range(2):
            context = []
            for head in range(self.heads):
                dims = range(head * d, (head + 1) * d)
                keys = [j for j in range(2) if allowed[i][j]]
                s = {j: sum(q[i][c] * k[j][c] for c in dims) / math.sqrt(d) for j in keys}
                top = max(s.values())
                z = sum(math.exp(s[j] - top) for j in keys)
                context += [sum(math.exp(s[j] - top) / z * v[j][c] for j in keys) for c in dims]
            out.append(affine('attn_out', context))
        return torch.tensor([out], dtype=torch.float64)

    def check(self, mask, causal, allowed):
        got = R.attention(self.x, self.w, self.heads, R.attention_allowed(torch.tensor([mask]), causal))
        torch.testing.assert_close(got, self.explicit(allowed), rtol=1e-12, atol=1e-12)

    def test_bidirectional(self):
        self.check([1, 1], False, [[1, 1], [1, 1]])

    def test_causal(self):
        self.check([1, 1], True, [[1, 0], [1, 1]])

    def test_padding(self):
        self.check([1, 0], False, [[1, 0], [1, 0]])

    def test_causal_first_token_sees_only_itself(self):
        # Token 0 attends to itself alone, so its context is exactly its value vector.
        got = R.attention(self.x, self.w, self.heads, R.attention_allowed(torch.ones(1, 2), True))
        v0 = R.linear(self.x[0, 0], self.w['value.weight'], self.w['value.bias'])
        want = R.linear(v0, self.w['attn_out.weight'], self.w['attn_out.bias'])
        torch.testing.assert_close(got[0, 0], want, rtol=1e-13, atol=1e-13)


class TorchModuleCrossCheck(unittest.TestCase):
    """A whole BERT forward against the same maths built from torch.nn modules
    (TransformerEncoderLayer with norm_first=True is exactly the pre-LN block).
    Random weights at scale 0.3 keep GELU inputs large, so the GELU kind,
    eps and head layout all matter here."""

    cfg = dict(hidden=16, heads=4, layers=2, ffn=64, vocab=50, positions=20, types=2)

    def setUp(self):
        c = self.cfg
        g = torch.Generator().manual_seed(11)

        def rand(*shape, scale=0.3):
            return torch.randn(*shape, generator=g) * scale

        w = {'embeddings.word': rand(c['vocab'], c['hidden']),
             'embeddings.position': rand(c['positions'], c['hidden']),
             'embeddings.token_type': rand(c['types'], c['hidden'])}
        shapes = {'query': (c['hidden'], c['hidden']), 'key': (c['hidden'], c['hidden']),
                  'value': (c['hidden'], c['hidden']), 'attn_out': (c['hidden'], c['hidden']),
                  'fc1': (c['ffn'], c['hidden']), 'fc2': (c['hidden'], c['ffn'])}
        for i in range(c['layers']):
            for name, shape in shapes.items():
                w[f'layers.{i}.{name}.weight'], w[f'layers.{i}.{name}.bias'] = rand(*shape), rand(shape[0])
            for ln in ('ln1', 'ln2'):
                w[f'layers.{i}.{ln}.weight'], w[f'layers.{i}.{ln}.bias'] = 1 + rand(c['hidden']), rand(c['hidden'])
        for name in ('final_ln', 'mlm.ln'):
            w[f'{name}.weight'], w[f'{name}.bias'] = 1 + rand(c['hidden']), rand(c['hidden'])
        w['pooler.weight'], w['pooler.bias'] = rand(c['hidden'], c['hidden']), rand(c['hidden'])
        w['mlm.dense.weight'], w['mlm.dense.bias'] = rand(c['hidden'], c['hidden']), rand(c['hidden'])
        w['mlm.bias'] = rand(c['vocab'])
        self.weights = w
        self.ids = torch.randint(0, c['vocab'], (2, 9), generator=g)
        self.types = torch.randint(0, c['types'], (2, 9), generator=g)
        self.mask = torch.ones(2, 9, dtype=torch.int64)
        self.mask[1, 6:] = 0

    def model(self, gelu, eps, causal):
        c = self.cfg
        config = R.Config(model_type='bert', hidden=c['hidden'], layers=c['layers'], heads=c['heads'],
                          ffn=c['ffn'], max_positions=c['positions'], vocab_rows=c['vocab'],
                          vocab_size=c['vocab'], type_vocab=c['types'], eps=eps, gelu=gelu,
                          head_gelu=gelu, causal=causal, num_labels=0)
        return R.Model(config, self.weights, 'masked-lm')

    def torch_modules(self, gelu, eps, causal):
        """(last_hidden_state, pooler_output, mlm logits) from nn modules in float64."""
        c, w = self.cfg, {k: v.double() for k, v in self.weights.items()}
        activation = 'gelu' if gelu == 'erf' else (lambda x: F.gelu(x, approximate='tanh'))
        x = w['embeddings.word'][self.ids] + w['embeddings.position'][:self.ids.shape[1]] \
            + w['embeddings.token_type'][self.types]
        seq = self.ids.shape[1]
        causal_mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1) if causal else None
        for i in range(c['layers']):
            layer = torch.nn.TransformerEncoderLayer(c['hidden'], c['heads'], c['ffn'], dropout=0.0,
                                                     activation=activation, layer_norm_eps=eps,
                                                     batch_first=True, norm_first=True).double().eval()
            p = lambda name: w[f'layers.{i}.{name}']
            with torch.no_grad():
                attn = layer.self_attn
                attn.in_proj_weight.copy_(torch.cat([p('query.weight'), p('key.weight'), p('value.weight')]))
                attn.in_proj_bias.copy_(torch.cat([p('query.bias'), p('key.bias'), p('value.bias')]))
                for module, name in ((attn.out_proj, 'attn_out'), (layer.linear1, 'fc1'), (layer.linear2, 'fc2'),
                                     (layer.norm1, 'ln1'), (layer.norm2, 'ln2')):
                    module.weight.copy_(p(name + '.weight'))
                    module.bias.copy_(p(name + '.bias'))
                x = layer(x, src_mask=causal_mask, src_key_padding_mask=self.mask == 0)
        hidden = F.layer_norm(x, (c['hidden'],), w['final_ln.weight'], w['final_ln.bias'], eps)
        pooled = torch.tanh(F.linear(hidden[:, 0], w['pooler.weight'], w['pooler.bias']))
        h = F.linear(hidden, w['mlm.dense.weight'], w['mlm.dense.bias'])
        h = F.gelu(h) if gelu == 'erf' else F.gelu(h, approximate='tanh')
        h = F.layer_norm(h, (c['hidden'],), w['mlm.ln.weight'], w['mlm.ln.bias'], eps)
        logits = F.linear(h, w['embeddings.word'], w['mlm.bias'])
        return hidden.detach(), pooled.detach(), logits.detach()

    def test_matches_torch_modules(self):
        for gelu, eps, causal in (('erf', 1e-12, False), ('tanh', 1e-5, False), ('tanh', 1e-5, True)):
            with self.subTest(gelu=gelu, eps=eps, causal=causal):
                model = self.model(gelu, eps, causal)
                base = R.forward(model, 'base', self.ids, self.types, self.mask)
                mlm = R.forward(model, 'masked-lm', self.ids, self.types, self.mask)
                hidden, pooled, logits = self.torch_modules(gelu, eps, causal)
                # Only the float32 cast of the outputs separates the two (~3e-8).
                self.assertLessEqual(rel_err(base['last_hidden_state'], hidden.numpy()), 1e-6)
                self.assertLessEqual(rel_err(base['pooler_output'], pooled.numpy()), 1e-6)
                self.assertLessEqual(rel_err(mlm['logits'], logits.numpy()), 1e-6)

    def test_gelu_kind_and_eps_matter_here(self):
        # The cross-check above would catch a wrong GELU or eps with these weights.
        a = R.forward(self.model('erf', 1e-12, False), 'masked-lm', self.ids, self.types)['logits']
        b = R.forward(self.model('tanh', 1e-12, False), 'masked-lm', self.ids, self.types)['logits']
        c = R.forward(self.model('erf', 1e-5, False), 'masked-lm', self.ids, self.types)['logits']
        self.assertGreater(rel_err(b, a), 1e-4)
        self.assertGreater(rel_err(c, a), 1e-6)


@NEEDS_FIXTURES
class Formats(unittest.TestCase):
    """Every format of one logical model loads to the same weights and outputs."""

    @classmethod
    def setUpClass(cls):
        cls.entries = [e for e in manifest()['fixtures']
                       if e.get('logical_model') and not e['format'].startswith('logical')]
        cls.logical = {name: R.read_safetensors(fixture(f'logical/{name}.safetensors'))
                       for name in ('bert', 'gpt2', 'bert-erf')}

    @staticmethod
    def load(entry, **overrides):
        if 'config' in entry:               # the NGC zip: shapes and heads from its HF config
            with open(fixture(entry['config'])) as f:
                overrides = {**json.load(f), **overrides}
        return R.load(fixture(entry['path']), config_overrides=overrides)

    def test_loaded_weights_equal_logical(self):
        hf_only = {'classifier.weight', 'classifier.bias', 'qa_outputs.weight', 'qa_outputs.bias'}
        for e in self.entries:
            with self.subTest(fixture=e['path']):
                model = self.load(e)
                want = self.logical[e['logical_model']]
                dtype = {'f32': torch.float32, 'f16': torch.float16, 'bf16': torch.bfloat16}[e['dtype']]
                self.assertLessEqual(set(model.weights) - hf_only, set(want))
                if e['format'].startswith('megatron'):
                    self.assertEqual(set(model.weights), set(want))
                for name, t in model.weights.items():
                    if name in want:
                        self.assertTrue(torch.equal(t, want[name].to(dtype).float()), name)

    def assert_same_outputs(self, got, want, tol=SAME_MODEL_TOL, what=''):
        self.assertEqual(set(got), set(want), what)
        for name in want:
            self.assertEqual(got[name].shape, want[name].shape, f'{what} {name}')
            self.assertEqual(got[name].dtype, np.float32)
            self.assertLessEqual(rel_err(got[name], want[name]), tol, f'{what} {name}')

    def same_as_logical(self, arch, task, fmt_filter, **logical_config):
        want = R.forward(logical_model(arch, **logical_config), task, IDS,
                         TOKEN_TYPES if arch == 'bert' else None)
        checked = 0
        for e in self.entries:
            if e['logical_model'] != arch or e['dtype'] != 'f32' or not fmt_filter(e):
                continue
            with self.subTest(fixture=e['path']):
                got = R.forward(self.load(e), task, IDS, TOKEN_TYPES if arch == 'bert' else None)
                self.assert_same_outputs(got, want, what=e['path'])
            checked += 1
        return checked

    def test_megatron_bert_formats(self):
        # v0-v3, TP1/TP2, bare, legacy and view files, text/bert (with a
        # vocab.txt): MLP tanh GELU, LM head erf GELU, eps 1e-5.
        n = self.same_as_logical('bert', 'pretraining', lambda e: e['format'].startswith('megatron'))
        self.assertEqual(n, 11)

    def test_gpt2_formats(self):
        # Megatron v0/v3, TP1/TP2, pipeline dir name, NGC zip (+ config), HF bin/safetensors/sharded.
        self.assertEqual(self.same_as_logical('gpt2', 'causal-lm', lambda e: True), 8)

    def test_hf_bert_encoder_pooler_nsp_match_megatron(self):
        # HF fixtures say gelu_new + eps 1e-5, which equals Megatron's MLP; the
        # encoder, pooler and NSP head therefore agree with the Megatron files.
        megatron = self.load({'path': 'megatron/bert_v3_tp1'})
        base = R.forward(megatron, 'base', IDS, TOKEN_TYPES)
        nsp = R.forward(megatron, 'next-sentence', IDS, TOKEN_TYPES)
        for task, want, names in (('base', base, ('base', 'pretraining', 'nsp')),
                                  ('next-sentence', nsp, ('pretraining', 'nsp'))):
            for name in ('megatron_bert_' + n for n in names):
                with self.subTest(fixture=name, task=task):
                    got = R.forward(R.load(fixture('hf/' + name)), task, IDS, TOKEN_TYPES)
                    self.assert_same_outputs(got, want, what=name)

    def test_hf_bert_mlm_head_gelu(self):
        # HF applies hidden_act (here gelu_new = tanh) in the MLM head too,
        # while Megatron's LM head uses erf: the logits differ visibly unless
        # the Megatron model is given the same activation.
        hf = R.forward(R.load(fixture('hf/megatron_bert_mlm')), 'masked-lm', IDS, TOKEN_TYPES)['logits']
        megatron = R.forward(self.load({'path': 'megatron/bert_v3_tp1'}), 'masked-lm', IDS, TOKEN_TYPES)['logits']
        self.assertGreater(rel_err(megatron, hf), GELU_VISIBLE)
        tanh_head = self.load({'path': 'megatron/bert_v3_tp1'}, hidden_act='gelu_new')
        self.assert_same_outputs(R.forward(tanh_head, 'masked-lm', IDS, TOKEN_TYPES), {'logits': hf})

    def test_hf_bert_mlm_formats(self):
        n = self.same_as_logical('bert', 'masked-lm', lambda e: e['task'] == 'masked-lm', head_gelu='tanh')
        self.assertEqual(n, 3)            # bin, safetensors, sharded safetensors
        n = self.same_as_logical('bert', 'pretraining',
                                 lambda e: e['format'].startswith('hf') and e['task'] == 'pretraining',
                                 head_gelu='tanh')
        self.assertEqual(n, 1)

    def test_hf_config_gelu_and_eps(self):
        # bert-erf's config.json says "gelu" (erf) and eps 1e-12; both must be used.
        model = R.load(fixture('hf/megatron_bert_mlm_erf'))
        self.assertEqual((model.config.gelu, model.config.head_gelu, model.config.eps), ('erf', 'erf', 1e-12))
        got = R.forward(model, 'masked-lm', IDS, TOKEN_TYPES)
        want = R.forward(logical_model('bert-erf', gelu='erf', head_gelu='erf', eps=1e-12),
                         'masked-lm', IDS, TOKEN_TYPES)
        self.assert_same_outputs(got, want)
        tanh = R.forward(logical_model('bert-erf', gelu='tanh', head_gelu='tanh', eps=1e-12),
                         'masked-lm', IDS, TOKEN_TYPES)
        self.assertGreater(rel_err(tanh['logits'], want['logits']), GELU_VISIBLE)

    def test_half_precision(self):
        for path, arch, task, dtype in (('megatron/bert_bf16', 'bert', 'pretraining', torch.bfloat16),
                                        ('megatron/gpt2_fp16', 'gpt2', 'causal-lm', torch.float16),
                                        ('hf/gpt2_fp16_safetensors', 'gpt2', 'causal-lm', torch.float16)):
            with self.subTest(fixture=path):
                token_types = TOKEN_TYPES if arch == 'bert' else None
                got = R.forward(R.load(fixture(path)), task, IDS, token_types)
                rounded = logical_model(arch)
                rounded.weights = {k: v.to(dtype).float() for k, v in rounded.weights.items()}
                self.assert_same_outputs(got, R.forward(rounded, task, IDS, token_types), what=path)
                full = R.forward(logical_model(arch), task, IDS, token_types)
                self.assert_same_outputs(got, full, tol=HALF_TOL[dtype], what=path)

    def test_hf_task_outputs(self):
        """Names and shapes as the HF heads return them; heads built on the shared encoder."""
        batch, seq = IDS.shape
        shapes = {
            'base': {'last_hidden_state': (batch, seq, 32), 'pooler_output': (batch, 32)},
            'mlm': {'logits': (batch, seq, 128)},
            'pretraining': {'prediction_logits': (batch, seq, 128), 'seq_relationship_logits': (batch, 2)},
            'nsp': {'logits': (batch, 2)},
            'seqcls': {'logits': (batch, 3)},
            'tokcls': {'logits': (batch, seq, 5)},
            'qa': {'start_logits': (batch, seq), 'end_logits': (batch, seq)},
            'causal': {'logits': (batch, seq, 128)},
        }
        for name, want in shapes.items():
            with self.subTest(fixture=name):
                model = R.load(fixture('hf/megatron_bert_' + name))
                got = R.forward(model, model.default_task, IDS, TOKEN_TYPES)
                self.assertEqual({k: v.shape for k, v in got.items()}, want)

        model = R.load(fixture('hf/megatron_bert_seqcls'))
        hidden = R.forward(model, 'base', IDS, TOKEN_TYPES)
        w = model.weights
        pooled = hidden['pooler_output'].astype(np.float64)
        want = pooled @ w['classifier.weight'].double().numpy().T + w['classifier.bias'].double().numpy()
        got = R.forward(model, 'sequence-classification', IDS, TOKEN_TYPES)['logits']
        self.assertLessEqual(rel_err(got, want), SAME_MODEL_TOL)

        model = R.load(fixture('hf/megatron_bert_qa'))
        seq_out = R.forward(model, 'base', IDS, TOKEN_TYPES)['last_hidden_state'].astype(np.float64)
        span = seq_out @ model.weights['qa_outputs.weight'].double().numpy().T \
            + model.weights['qa_outputs.bias'].double().numpy()
        got = R.forward(model, 'question-answering', IDS, TOKEN_TYPES)
        self.assertLessEqual(rel_err(got['start_logits'], span[..., 0]), SAME_MODEL_TOL)
        self.assertLessEqual(rel_err(got['end_logits'], span[..., 1]), SAME_MODEL_TOL)

    def test_multiple_choice(self):
        # logits[b, c] = classifier(pooled(choice c of item b)), reshaped to [batch, choices].
        model = R.load(fixture('hf/megatron_bert_multichoice'))
        choices = np.stack([IDS, IDS[::-1]], axis=1)          # [3, 2, 12]
        types = np.stack([TOKEN_TYPES, 1 - TOKEN_TYPES], axis=1)
        got = R.forward(model, 'multiple-choice', choices, types)['logits']
        self.assertEqual(got.shape, (3, 2))
        w, b = model.weights['classifier.weight'].double().numpy(), model.weights['classifier.bias'].double().numpy()
        for c in range(2):
            pooled = R.forward(model, 'base', choices[:, c], types[:, c])['pooler_output'].astype(np.float64)
            self.assertLessEqual(rel_err(got[:, c], (pooled @ w.T + b)[:, 0]), SAME_MODEL_TOL)

    def test_token_types_matter_for_bert(self):
        model = R.load(fixture('megatron/bert_v3_tp1'))
        a = R.forward(model, 'base', IDS)['last_hidden_state']
        b = R.forward(model, 'base', IDS, TOKEN_TYPES)['last_hidden_state']
        self.assertGreater(rel_err(a, b), 1e-3)

    def test_vocab_size_override_truncates_logits(self):
        full = R.forward(R.load(fixture('megatron/gpt2_v3_tp1')), 'causal-lm', IDS)['logits']
        cut = R.forward(R.load(fixture('megatron/gpt2_v3_tp1'), config_overrides={'vocab_size': 100}),
                        'causal-lm', IDS)['logits']
        self.assertEqual(cut.shape, IDS.shape + (100,))
        np.testing.assert_array_equal(cut, full[..., :100])

    def test_refusals(self):
        cases = [('bad/evil_pickle.pt', {}, 'disallowed pickle global posix.system'),
                 ('bad/evil_eval.pt', {}, 'disallowed pickle global __builtin__.eval'),
                 ('bad/missing_rank', {}, 'mp_rank_01 missing'),
                 ('bad/mismatched_shards', {}, 'TP shard shape mismatch'),
                 ('bad/config_mismatch', {}, 'hidden_size 64 vs weights 32'),
                 ('bad/short_storage.pt', {}, 'tensor needs'),
                 ('bad/truncated.pt', {}, 'truncated'),
                 ('bad/not_a_zip.pt', {}, 'not a torch checkpoint'),
                 ('megatron/gpt2_ngc.zip', {}, 'number of attention heads unknown'),
                 ('megatron/bert_v3_tp1', {'num_attention_heads': 3}, 'not divisible'),
                 ('megatron/bert_v3_tp1', {'hidden_act': 'relu'}, 'not supported')]
        for path, overrides, message in cases:
            with self.subTest(fixture=path):
                with self.assertRaisesRegex(R.ReferenceError, message):
                    R.load(fixture(path), config_overrides=overrides)


@NEEDS_FIXTURES
class Masking(unittest.TestCase):
    """Causality and padding, on real fixtures."""

    def test_gpt2_prefill_causality(self):
        # Logits of a prefix equal the first positions of the longer sequence's logits.
        for path in ('megatron/gpt2_v3_tp1', 'hf/gpt2'):
            model = R.load(fixture(path))
            full = R.forward(model, 'causal-lm', IDS)['logits']
            for k in (1, 5, 11):
                with self.subTest(fixture=path, prefix=k):
                    prefix = R.forward(model, 'causal-lm', IDS[:, :k])['logits']
                    self.assertLessEqual(rel_err(prefix, full[:, :k]), SAME_MODEL_TOL)

    def test_bert_causal_lm_is_causal(self):
        model = R.load(fixture('hf/megatron_bert_causal'))
        full = R.forward(model, 'causal-lm', IDS, TOKEN_TYPES)['logits']
        prefix = R.forward(model, 'causal-lm', IDS[:, :7], TOKEN_TYPES[:, :7])['logits']
        self.assertLessEqual(rel_err(prefix, full[:, :7]), SAME_MODEL_TOL)

    def test_bert_is_bidirectional(self):
        # A later token changes the output at position 0: the encoder is not causal.
        model = R.load(fixture('megatron/bert_v3_tp1'))
        changed = IDS.copy()
        changed[:, -1] = (changed[:, -1] + 1) % 128
        a = R.forward(model, 'base', IDS)['last_hidden_state'][:, 0]
        b = R.forward(model, 'base', changed)['last_hidden_state'][:, 0]
        self.assertGreater(rel_err(a, b), 1e-6)

    def check_padding(self, model, task, token_types):
        """Item 0 is 7 real tokens padded to 12 with junk ids; with its mask it
        gives the unpadded sequence's outputs at the real positions."""
        real = 7
        mask = np.ones_like(IDS)
        mask[0, real:] = 0
        batch = R.forward(model, task, IDS, token_types, mask)
        alone = R.forward(model, task, IDS[:1, :real], None if token_types is None else token_types[:1, :real])
        for name, want in alone.items():
            got = batch[name][:1]
            if got.ndim >= 2 and got.shape[1] == IDS.shape[1]:      # per-token outputs
                got = got[:, :real]
            self.assertLessEqual(rel_err(got, want), SAME_MODEL_TOL, name)
        # The other items are unaffected by item 0's padding.
        unmasked = R.forward(model, task, IDS[1:], None if token_types is None else token_types[1:])
        for name, want in unmasked.items():
            self.assertLessEqual(rel_err(batch[name][1:], want), SAME_MODEL_TOL, name)

    def test_bert_padding(self):
        model = R.load(fixture('megatron/bert_v3_tp1'))
        for task in ('base', 'pretraining'):
            with self.subTest(task=task):
                self.check_padding(model, task, TOKEN_TYPES)

    def test_gpt2_padding(self):
        self.check_padding(R.load(fixture('megatron/gpt2_v3_tp1')), 'causal-lm', None)


@NEEDS_FIXTURES
class CommandLine(unittest.TestCase):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference.py')

    def run_cli(self, *args):
        return subprocess.run([sys.executable, self.script, *args], capture_output=True, text=True)

    def test_writes_npy_outputs(self):
        with tempfile.TemporaryDirectory() as out:
            r = self.run_cli(fixture('megatron/bert_v1_tp2'), '--task', 'pretraining',
                             '--input-ids', '5,17,99,3;1,2,3,4', '--token-type-ids', '0,0,1,1;0,0,0,0',
                             '--attention-mask', '1,1,1,1;1,1,1,0', '--output-dir', out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(sorted(os.listdir(out)), ['prediction_logits.npy', 'seq_relationship_logits.npy'])
            want = R.forward(R.load(fixture('megatron/bert_v1_tp2')), 'pretraining', [[5, 17, 99, 3], [1, 2, 3, 4]],
                             [[0, 0, 1, 1], [0, 0, 0, 0]], [[1, 1, 1, 1], [1, 1, 1, 0]])
            for name, array in want.items():
                got = np.load(os.path.join(out, name + '.npy'))
                self.assertEqual(got.dtype, np.float32)
                np.testing.assert_array_equal(got, array)

    def test_multiple_choice_and_config(self):
        with tempfile.TemporaryDirectory() as out:
            r = self.run_cli(fixture('hf/megatron_bert_multichoice'), '--input-ids', '1,2,3|4,5,6;7,8,9|10,11,12',
                             '--output-dir', out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(np.load(os.path.join(out, 'logits.npy')).shape, (2, 2))
            r = self.run_cli(fixture('megatron/gpt2_ngc.zip'), '--config', fixture('megatron/gpt2_ngc_config.json'),
                             '--set', 'vocab_size=100', '--input-ids', '1,2,3', '--output-dir', out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(np.load(os.path.join(out, 'logits.npy')).shape, (1, 3, 100))

    def test_errors_are_one_line(self):
        with tempfile.TemporaryDirectory() as out:
            for args in (['--input-ids', '1,2;3'], ['--input-ids', '1,2', '--set', 'nonsense=1'],
                         ['--input-ids', '1,2', '--task', 'question-answering']):
                r = self.run_cli(fixture('megatron/bert_v3_tp1'), '--output-dir', out, *args)
                self.assertEqual(r.returncode, 1)
                self.assertRegex(r.stderr, r'^error: [^\n]+\n$')


if __name__ == '__main__':
    unittest.main()
