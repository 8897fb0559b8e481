"""Text tasks end to end: megatron-run fill-mask / generate / classify /
token-classify / qa / next-sentence / embed / tokenize on the tiny fixtures.

    MEGATRON_FIXTURES=build/test/fixtures MEGATRON_BIN=build/bin \\
        /usr/bin/python3 -m unittest discover -s test/e2e -p test_tasks.py -v

The models have random weights, so this checks the plumbing: the ids the
tokenizer gives (itself checked against Hugging Face's tokenizers in
test/tokenizer) go through the artifact, and the scores, rankings, spans
and greedy tokens equal what test/reference/reference.py (float64, no code
shared) computes from the same ids. Also: batches equal single runs, seeds
reproduce, stop conditions, and the errors a user meets.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'test', 'reference'))
import reference as R  # noqa: E402

FIXTURES = os.environ.get('MEGATRON_FIXTURES', os.path.join(ROOT, 'build', 'test', 'fixtures'))
BIN = os.environ.get('MEGATRON_BIN', os.path.join(ROOT, 'build', 'bin'))
BERT_VOCAB = os.path.join(FIXTURES, 'text', 'bert', 'vocab.txt')
SCORE_TOL = 1e-4


def fixture(*parts):
    return os.path.join(FIXTURES, *parts)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Tasks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix='megatron-tasks-')
        cls.models = {}
        cls.artifacts = {}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def tool(self, name):
        # The sanitizer build has no megatron-compile; it names a plain build's.
        path = os.environ.get('MEGATRON_COMPILE') if name == 'megatron-compile' else None
        path = path or os.path.join(BIN, name)
        self.assertTrue(os.access(path, os.X_OK), f'{path} does not exist: build it')
        return path

    def artifact(self, source, *flags):
        """Compiles fixture `source` once per flag set."""
        key = (source, flags)
        if key not in self.artifacts:
            out = os.path.join(self.work, f'a{len(self.artifacts)}.mtc')
            r = subprocess.run([self.tool('megatron-compile'), fixture(source), *flags, '-o', out],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.artifacts[key] = out
        return self.artifacts[key]

    def run_cli(self, *argv, ok=True):
        r = subprocess.run([self.tool('megatron-run'), *map(str, argv)], capture_output=True,
                           timeout=300)
        stderr = r.stderr.decode('utf-8', 'replace')
        if ok:
            self.assertEqual(r.returncode, 0, f'megatron-run {argv}: {stderr}')
        return r.returncode, r.stdout.decode('utf-8', 'replace'), stderr

    def json_of(self, *argv):
        return json.loads(self.run_cli(*argv, '--json')[1])

    def fails_with(self, text, *argv):
        code, out, err = self.run_cli(*argv, ok=False)
        self.assertNotEqual(code, 0, f'megatron-run {argv} should fail')
        self.assertRegex(err, r'^error: [^\n]+\n$')
        self.assertIn(text, err)

    def model(self, source):
        if source not in self.models:
            self.models[source] = R.load(fixture(source))
        return self.models[source]

    def encode(self, artifact, text, pair=None):
        extra = ['--pair', pair] if pair is not None else []
        return self.json_of(artifact, 'tokenize', text, *extra)

    # -- fill-mask --------------------------------------------------------

    def test_fill_mask_matches_the_reference(self):
        bert = self.artifact('text/bert', '--task', 'masked-lm')
        text = 'The capital of [MASK] is paris, the [MASK] of france.'
        got = self.json_of(bert, 'fill-mask', text, '--top-k', 4)[0]
        enc = self.encode(bert, text)
        ids = enc['ids']
        logits = R.forward(self.model('text/bert'), 'masked-lm', [ids])['logits'][0]
        masks = [i for i, t in enumerate(ids) if t == 4]       # [MASK] is id 4
        self.assertEqual(len(got['masks']), len(masks))
        # Scores are over the tokenizer's words: Megatron's padding rows of
        # the embedding are no tokens.
        with open(BERT_VOCAB) as f:
            words = len(f.read().split('\n')) - 1
        for position, candidates in zip(masks, got['masks']):
            p = softmax(logits[position][:words].astype(np.float64))
            want = np.argsort(-p, kind='stable')[:4]
            self.assertEqual([c['token'] for c in candidates], list(want))
            for c in candidates:
                self.assertAlmostEqual(c['score'], p[c['token']], delta=SCORE_TOL)
                # The sequence puts the candidate where this mask was
                # (special tokens are left out of it, as in Hugging Face).
                if not c['token_str'].startswith('['):
                    self.assertIn(c['token_str'].lstrip('#'), c['sequence'])
        # Pretraining artifacts fill masks from their prediction_logits.
        pre = self.artifact('text/bert', '--task', 'pretraining')
        self.assertEqual(self.json_of(pre, 'fill-mask', text, '--top-k', 4)[0], got)

    def test_batches_equal_single_runs(self):
        bert = self.artifact('text/bert', '--task', 'masked-lm')
        lines = ['The [MASK] is red.', 'Hello world, the capital of france is [MASK] and it is old.',
                 '[MASK]!']
        path = os.path.join(self.work, 'lines.txt')
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n\n')
        batch = self.json_of(bert, 'fill-mask', '--input-file', path)
        self.assertEqual(len(batch), 3)
        for line, result in zip(lines, batch):
            single = self.json_of(bert, 'fill-mask', line)[0]
            self.assertEqual([c['token'] for m in single['masks'] for c in m],
                             [c['token'] for m in result['masks'] for c in m])
            for a, b in zip([c['score'] for m in single['masks'] for c in m],
                            [c['score'] for m in result['masks'] for c in m]):
                self.assertAlmostEqual(a, b, delta=1e-5)

    # -- generate ---------------------------------------------------------

    def test_greedy_generation_matches_the_reference(self):
        gpt2 = self.artifact('text/gpt2')
        prompt = 'The capital of France is'
        got = self.json_of(gpt2, 'generate', prompt, '--max-new-tokens', 8, '--greedy')[0]
        ids = self.encode(gpt2, prompt)['ids']
        self.assertEqual(got['prompt_tokens'], len(ids))
        model = self.model('text/gpt2')
        want = []
        for _ in range(8):
            logits = R.forward(model, 'causal-lm', [ids + want])['logits'][0, -1]
            want.append(int(np.argmax(logits[:320])))
        self.assertEqual(got['ids'], want)
        self.assertEqual(got['stop_reason'], 'max-new-tokens')
        text = self.json_of(gpt2, 'detokenize', ','.join(map(str, want)))['text']
        self.assertEqual(got['generated_text'], text)

    def test_sampling_seeds_reproduce(self):
        gpt2 = self.artifact('text/gpt2')
        args = [gpt2, 'generate', 'Hello world', '--max-new-tokens', 12, '--temperature', 1.5,
                '--top-p', 0.95]
        a = self.json_of(*args, '--seed', 1)[0]['ids']
        self.assertEqual(a, self.json_of(*args, '--seed', 1)[0]['ids'])
        others = [self.json_of(*args, '--seed', s)[0]['ids'] for s in (2, 3, 4)]
        self.assertTrue(any(o != a for o in others), 'different seeds all sampled the same tokens')
        # top-k 1 is greedy whatever the seed and temperature.
        greedy = self.json_of(gpt2, 'generate', 'Hello world', '--max-new-tokens', 12, '--greedy')[0]
        one = self.json_of(*args, '--seed', 9, '--top-k', 1)[0]
        self.assertEqual(one['ids'], greedy['ids'])

    def test_stop_text_and_context_limits(self):
        gpt2 = self.artifact('text/gpt2')
        full = self.json_of(gpt2, 'generate', 'The king', '--max-new-tokens', 20, '--greedy')[0]
        text = full['generated_text']
        stop = text[len(text) // 2:len(text) // 2 + 2]
        self.assertTrue(stop)
        cut = self.json_of(gpt2, 'generate', 'The king', '--max-new-tokens', 20, '--greedy',
                           '--stop', stop)[0]
        self.assertEqual(cut['stop_reason'], 'stop')
        self.assertEqual(cut['generated_text'], text[:text.find(stop)])
        # Streamed text (human mode) is the same text.
        code, out, err = self.run_cli(gpt2, 'generate', 'The king', '--max-new-tokens', 20,
                                      '--greedy', '--stop', stop)
        self.assertEqual(out, 'The king' + cut['generated_text'] + '\n')
        self.assertIn('stopped: stop text', err)
        # The model has 64 positions: generation ends when they are used up.
        ids = self.encode(gpt2, 'The king')['ids']
        long = self.json_of(gpt2, 'generate', 'The king', '--max-new-tokens', 500, '--greedy')[0]
        self.assertEqual(long['stop_reason'], 'context')
        self.assertEqual(len(ids) + len(long['ids']), 64)
        self.fails_with('leaves no room', gpt2, 'generate', 'the ' * 70)

    # -- heads ------------------------------------------------------------

    def hf(self, name, task):
        return self.artifact(f'hf/{name}', '--task', task, '--vocab', BERT_VOCAB)

    def test_classify_and_next_sentence(self):
        for source, task, command, want_name in (
                ('hf/megatron_bert_seqcls', 'sequence-classification', 'classify', 'logits'),
                ('hf/megatron_bert_nsp', 'next-sentence', 'next-sentence', 'logits'),
                ('text/bert', 'pretraining', 'next-sentence', 'seq_relationship_logits')):
            with self.subTest(source=source):
                artifact = self.artifact(source, '--task', task, '--vocab', BERT_VOCAB)
                a, b = 'the cat is red.', 'it is a big dog!'
                got = self.json_of(artifact, command, a, b)[0]
                enc = self.encode(artifact, a, b)
                out = R.forward(self.model(source), task, [enc['ids']], [enc['token_type_ids']])
                p = softmax(out[want_name][0].astype(np.float64))
                self.assertEqual(len(got['scores']), len(p))
                for score, want in zip(got['scores'].values(), p):
                    self.assertAlmostEqual(score, want, delta=SCORE_TOL)
                self.assertAlmostEqual(got['score'], p.max(), delta=SCORE_TOL)

    def test_label_names_come_from_id2label(self):
        config = os.path.join(self.work, 'labels.json')
        names = ['negative', 'neutral', 'positive']
        with open(config, 'w') as f:
            json.dump({'id2label': {str(i): n for i, n in enumerate(names)}}, f)
        artifact = self.artifact('hf/megatron_bert_seqcls', '--task', 'sequence-classification',
                                 '--vocab', BERT_VOCAB, '--config', config)
        got = self.json_of(artifact, 'classify', 'the cat is red.')[0]
        self.assertEqual(list(got['scores']), names)
        self.assertIn(got['label'], names)
        with open(config, 'w') as f:
            json.dump({'id2label': {'0': 'a', '5': 'b'}}, f)
        r = subprocess.run([self.tool('megatron-compile'), fixture('hf/megatron_bert_seqcls'),
                            '--config', config, '-o', os.path.join(self.work, 'bad.mtc')],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("'id2label' must map the indices 0..1 to names", r.stderr)

    def test_token_classify_and_qa(self):
        tok = self.hf('megatron_bert_tokcls', 'token-classification')
        text = 'Hello world, the capital of france is paris.'
        got = self.json_of(tok, 'token-classify', text)[0]
        enc = self.encode(tok, text)
        logits = R.forward(self.model('hf/megatron_bert_tokcls'), 'token-classification',
                           [enc['ids']])['logits'][0]
        self.assertEqual([g['index'] for g in got], list(range(1, len(enc['ids']) - 1)))
        for g in got:
            p = softmax(logits[g['index']].astype(np.float64))
            self.assertAlmostEqual(g['score'], p.max(), delta=SCORE_TOL)
            self.assertEqual(text.encode()[g['start']:g['end']].decode().lower(), g['word'])

        qa = self.hf('megatron_bert_qa', 'question-answering')
        question, context = 'what is the capital of france?', 'the capital of france is paris, an old city.'
        got = self.json_of(qa, 'qa', '--question', question, '--context', context)[0]
        enc = self.encode(qa, question, context)
        out = R.forward(self.model('hf/megatron_bert_qa'), 'question-answering', [enc['ids']],
                        [enc['token_type_ids']])
        ctx = [i for i, t in enumerate(enc['token_type_ids']) if t == 1][:-1]   # without [SEP]
        ps = softmax(out['start_logits'][0][ctx].astype(np.float64))
        pe = softmax(out['end_logits'][0][ctx].astype(np.float64))
        best = max((ps[i] * pe[j], i, j) for i in range(len(ctx))
                   for j in range(i, min(len(ctx), i + 15)))
        self.assertAlmostEqual(got['score'], best[0], delta=SCORE_TOL)
        self.assertEqual(context[got['start']:got['end']], got['answer'])

    def test_embed(self):
        base = self.hf('megatron_bert_base', 'base')
        texts = ['hello world', 'the cat is red and the dog is blue.']
        pooled = self.json_of(base, 'embed', *texts)
        hidden = self.json_of(base, 'embed', *texts, '--last-hidden')
        for i, text in enumerate(texts):
            ids = self.encode(base, text)['ids']
            out = R.forward(self.model('hf/megatron_bert_base'), 'base', [ids])
            np.testing.assert_allclose(pooled[i], out['pooler_output'][0], atol=1e-4)
            np.testing.assert_allclose(hidden[i], out['last_hidden_state'][0], atol=1e-4)

    # -- errors -----------------------------------------------------------

    def test_errors(self):
        bert = self.artifact('text/bert', '--task', 'masked-lm')
        gpt2 = self.artifact('text/gpt2')
        self.fails_with("'masked-lm' head", bert, 'generate', 'hello')
        self.fails_with("'causal-lm' head", gpt2, 'fill-mask', 'hello [MASK]')
        self.fails_with("'masked-lm' head", bert, 'classify', 'hello')
        self.fails_with("'masked-lm' head", bert, 'qa', '--question', 'a', '--context', 'b')
        self.fails_with('no [MASK] token', bert, 'fill-mask', 'hello world')
        self.fails_with('is empty', bert, 'fill-mask', '')
        self.fails_with('the prompt is empty', gpt2, 'generate', '')
        short = self.artifact('text/bert', '--task', 'masked-lm', '--max-seq', '8')
        self.fails_with('more than the 8 this artifact takes', short, 'fill-mask',
                        'the cat is red and the dog is [MASK]')
        plain = self.artifact('megatron/bert_v3_tp1', '--task', 'masked-lm')
        self.fails_with('has no tokenizer', plain, 'fill-mask', 'hello [MASK]')
        self.fails_with('has no tokenizer', plain, 'tokenize', 'hello')
        r = subprocess.run([self.tool('megatron-compile'), fixture('text/gpt2'), '--vocab', BERT_VOCAB,
                            '-o', os.path.join(self.work, 'x.mtc')], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("needs GPT-2's byte-level BPE", r.stderr)


if __name__ == '__main__':
    unittest.main()
