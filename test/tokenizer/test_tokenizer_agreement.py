"""Our tokenizers (megatron-tokenize) against Hugging Face's reference.

Every line of the corpus (make_corpus.py) must get exactly the ids that
@huggingface/tokenizers gives (reference_tokenize.mjs), for GPT-2 (real
encoder.json/vocab.bpe) and BERT uncased and cased (real uncased vocab.txt).

Environment:
  MEGATRON_BIN               folder with megatron-tokenize (required; missing fails)
  MEGATRON_TOKENIZER_REF     folder that fetch_reference.sh filled (required)
  MEGATRON_TOKENIZER_CORPUS  corpus to use (optional; else generated into a temp dir)
  MEGATRON_NODE              node binary (optional; else node on PATH)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MIN_LINES = 10000
SHOW = 5          # mismatching lines printed on failure
TIMEOUT = 900     # seconds for one tokenizer run


def read_lines(path):
    """UTF-8, split on '\\n' only, as both tools do (not str.splitlines)."""
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def byte_decoder():
    """GPT-2's byte-level alphabet, reversed: printable char -> byte."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    rest = [b for b in range(256) if b not in keep]
    table = {chr(b): b for b in keep}
    table.update({chr(256 + i): b for i, b in enumerate(rest)})
    return table


def run_ids(cmd, what, n_lines):
    """Runs a tokenizer; returns one id list per line of its stdout."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    except FileNotFoundError as e:
        raise AssertionError(f"{what}: cannot run {cmd[0]}: {e}")
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{what}: timed out after {TIMEOUT} s: {' '.join(cmd)}")
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError(f"{what} exited {p.returncode}: {' '.join(cmd)}\n{err[-4000:]}")
    out = p.stdout.decode("utf-8").split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != n_lines:
        raise AssertionError(f"{what} printed {len(out)} lines for {n_lines} input lines\n{err[-2000:]}")
    ids = []
    for i, s in enumerate(out):
        try:
            v = json.loads(s)
        except ValueError as e:
            raise AssertionError(f"{what}: output line {i + 1} is not JSON ({e}): {s[:200]!r}")
        if not isinstance(v, list) or not all(isinstance(x, int) for x in v):
            raise AssertionError(f"{what}: output line {i + 1} is not a list of ids: {s[:200]!r}")
        ids.append(v)
    return ids


class TokenizerAgreement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="megatron-tokenizer-")
        bin_dir = os.environ.get("MEGATRON_BIN")
        ref = os.environ.get("MEGATRON_TOKENIZER_REF")
        if not bin_dir or not ref:
            raise AssertionError("set MEGATRON_BIN (build/bin) and MEGATRON_TOKENIZER_REF "
                                 "(a folder filled by test/tokenizer/fetch_reference.sh)")
        cls.tool = os.path.join(bin_dir, "megatron-tokenize")
        cls.node = os.environ.get("MEGATRON_NODE") or shutil.which("node")
        cls.ref = ref
        cls.files = {k: os.path.join(ref, f) for k, f in [
            ("bert", "bert-vocab.txt"), ("encoder", "gpt2-encoder.json"),
            ("merges", "gpt2-vocab.bpe"), ("modules", "node_modules")]}
        for k, f in cls.files.items():
            if not os.path.exists(f):
                raise AssertionError(f"{f} is missing: run test/tokenizer/fetch_reference.sh {ref}")
        if not cls.node:
            raise AssertionError("node is not on PATH (set MEGATRON_NODE)")
        corpus = os.environ.get("MEGATRON_TOKENIZER_CORPUS")
        if not corpus:
            corpus = os.path.join(cls.tmp.name, "corpus.txt")
            subprocess.run([sys.executable, os.path.join(HERE, "make_corpus.py"), corpus], check=True)
        cls.corpus = corpus
        cls.lines = read_lines(corpus)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_corpus_size(self):
        self.assertGreaterEqual(len(self.lines), MIN_LINES, f"{self.corpus} is too small")
        self.assertFalse(any("\r" in x for x in self.lines), "corpus lines must not hold '\\r'")

    def agree(self, name, ref_args, our_args, id_to_token, show_token=repr):
        if not os.access(self.tool, os.X_OK):
            self.fail(f"{self.tool} is missing: build it (cmake --build build)")
        ref_cmd = [self.node, os.path.join(HERE, "reference_tokenize.mjs"),
                   "--modules", self.files["modules"], *ref_args, "--lines", self.corpus]
        our_cmd = [self.tool, *our_args, "--lines", self.corpus]
        n = len(self.lines)
        ref = run_ids(ref_cmd, f"reference ({name})", n)
        ours = run_ids(our_cmd, f"megatron-tokenize ({name})", n)
        bad = [i for i in range(n) if ref[i] != ours[i]]
        if not bad:
            return
        tok = lambda ids: " ".join(show_token(id_to_token[i]) if i in id_to_token else f"<{i}?>"
                                   for i in ids)
        msg = [f"{name}: {len(bad)} of {n} lines differ ({100.0 * (n - len(bad)) / n:.3f}% agree); "
               f"first {min(SHOW, len(bad))}:"]
        for i in bad[:SHOW]:
            first = next((k for k, (a, b) in enumerate(zip(ref[i], ours[i])) if a != b),
                         min(len(ref[i]), len(ours[i])))
            msg += [f"--- line {i + 1}: {self.lines[i]!r}",
                    f"  first difference at token {first}",
                    f"  reference ids: {ref[i]}",
                    f"  ours      ids: {ours[i]}",
                    f"  reference tokens: {tok(ref[i])}",
                    f"  ours      tokens: {tok(ours[i])}"]
        self.fail("\n".join(msg))

    def bert_vocab(self):
        return dict(enumerate(read_lines(self.files["bert"])))

    def test_gpt2(self):
        with open(self.files["encoder"], encoding="utf-8") as f:
            vocab = {v: k for k, v in json.load(f).items()}
        dec = byte_decoder()
        # Tokens as the bytes they stand for, not GPT-2's printable alphabet.
        show = lambda t: repr(bytes(dec[c] for c in t))[1:] if all(c in dec for c in t) else repr(t)
        self.agree("gpt2",
                   ["--gpt2", self.files["encoder"], self.files["merges"]],
                   ["--vocab", self.files["encoder"], "--merges", self.files["merges"]], vocab, show)

    def test_bert_uncased(self):
        self.agree("bert-uncased", ["--bert", self.files["bert"]],
                   ["--vocab", self.files["bert"]], self.bert_vocab())

    def test_bert_cased(self):
        # Same (uncased) vocabulary; no lowercasing and no accent stripping.
        self.agree("bert-cased", ["--bert", self.files["bert"], "--cased"],
                   ["--vocab", self.files["bert"], "--cased"], self.bert_vocab())


if __name__ == "__main__":
    unittest.main()
