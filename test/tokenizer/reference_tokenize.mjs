// Reference tokenizer: Hugging Face's pure-JS tokenizers (@huggingface/tokenizers)
// driven with the tokenizer.json / tokenizer_config.json objects that the
// Hugging Face `tokenizers` format defines for bert-base-(un)cased and gpt2,
// built here in memory from the raw vocabulary files.
//
// Usage:
//   node reference_tokenize.mjs --modules DIR/node_modules
//        (--bert VOCAB_TXT [--cased] | --gpt2 ENCODER_JSON VOCAB_BPE)
//        --lines FILE [--time]
// Prints one JSON array of ids per line of FILE (UTF-8, split on '\n' only; a
// final empty string after the last '\n' is not a line), encoded with the
// default special tokens: [CLS] ... [SEP] for BERT, nothing for GPT-2.
// --time: prints {"lines","tokens","seconds","tokens_per_s"} to stderr, timing
// the encode loop only.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

function die(msg) {
  process.stderr.write(`error: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const a = { cased: false, time: false };
  for (let i = 0; i < argv.length; ++i) {
    const need = (n) => {
      const v = argv.slice(i + 1, i + 1 + n);
      if (v.length < n || v.some((x) => x.startsWith("--"))) die(`${argv[i]} needs ${n} value(s)`);
      i += n;
      return v;
    };
    switch (argv[i]) {
      case "--modules": [a.modules] = need(1); break;
      case "--bert": [a.bertVocab] = need(1); break;
      case "--gpt2": [a.encoder, a.merges] = need(2); break;
      case "--lines": [a.lines] = need(1); break;
      case "--cased": a.cased = true; break;
      case "--time": a.time = true; break;
      default: die(`unknown argument ${argv[i]}`);
    }
  }
  if (!a.modules) die("--modules DIR/node_modules is required");
  if (!a.lines) die("--lines FILE is required");
  if (!!a.bertVocab === !!a.encoder) die("give exactly one of --bert VOCAB_TXT or --gpt2 ENCODER_JSON VOCAB_BPE");
  if (a.cased && !a.bertVocab) die("--cased only applies to --bert");
  return a;
}

function readText(file) {
  let bytes;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    die(`cannot read ${file}: ${e.message}`);
  }
  try {
    // fatal: invalid UTF-8 is an input error, not something to paper over with
    // U+FFFD; ignoreBOM: a leading U+FEFF is text like any other.
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    die(`${file} is not valid UTF-8`);
  }
}

// Lines split on '\n' only: '\r', U+2028, U+0085 etc. stay inside lines.
function splitLines(text) {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

// A null-prototype object, so a token named "__proto__" is an ordinary key.
function vocabObject(entries) {
  const v = Object.create(null);
  for (const [tok, id] of entries) v[tok] = id;
  return v;
}

function bertTokenizer(vocabFile, cased) {
  // vocab.txt: one token per line, id = line number (as transformers' load_vocab).
  const tokens = splitLines(readText(vocabFile)).map((t) => t.replace(/\r$/, ""));
  const vocab = vocabObject(tokens.map((t, i) => [t, i]));
  const special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
  for (const s of special) if (!(s in vocab)) die(`${vocabFile} has no ${s}`);
  const tok = (s) => ({ id: vocab[s], content: s, single_word: false, lstrip: false,
                        rstrip: false, normalized: false, special: true });
  const spec = (s) => ({ SpecialToken: { id: s, type_id: 0 } });
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: special.map(tok),
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true,
                  strip_accents: null, lowercase: !cased },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [spec("[CLS]"), { Sequence: { id: "A", type_id: 0 } }, spec("[SEP]")],
      pair: [spec("[CLS]"), { Sequence: { id: "A", type_id: 0 } }, spec("[SEP]"),
             { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: "[SEP]", type_id: 1 } }],
      special_tokens: Object.fromEntries(["[CLS]", "[SEP]"].map(
        (s) => [s, { id: s, ids: [vocab[s]], tokens: [s] }])),
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##",
             max_input_chars_per_word: 100, vocab },
  };
  const config = {
    tokenizer_class: "BertTokenizer", do_lower_case: !cased, tokenize_chinese_chars: true,
    strip_accents: null, unk_token: "[UNK]", sep_token: "[SEP]", pad_token: "[PAD]",
    cls_token: "[CLS]", mask_token: "[MASK]", model_max_length: 512,
    clean_up_tokenization_spaces: true,
  };
  return { json, config };
}

function gpt2Tokenizer(encoderFile, mergesFile) {
  let encoder;
  try {
    // JSON.parse makes "__proto__" an own key, as vocabObject does.
    encoder = JSON.parse(readText(encoderFile));
  } catch (e) {
    die(`${encoderFile}: ${e.message}`);
  }
  const vocab = vocabObject(Object.entries(encoder));
  const eot = "<|endoftext|>";
  if (!(eot in vocab)) die(`${encoderFile} has no ${eot}`);
  // vocab.bpe: "#version: 0.2" then one "a b" merge per line, rank = order.
  const lines = splitLines(readText(mergesFile));
  const merges = lines.filter((l, i) => !(i === 0 && l.startsWith("#version")) && l !== "");
  for (const m of merges) if (m.split(" ").length !== 2) die(`${mergesFile}: bad merge ${JSON.stringify(m)}`);
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [{ id: vocab[eot], content: eot, single_word: false, lstrip: false,
                     rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", ...byteLevel },
    post_processor: { type: "ByteLevel", ...byteLevel, trim_offsets: false },
    decoder: { type: "ByteLevel", ...byteLevel },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
             end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  const config = {
    tokenizer_class: "GPT2Tokenizer", add_prefix_space: false, model_max_length: 1024,
    bos_token: eot, eos_token: eot, unk_token: eot, clean_up_tokenization_spaces: true,
  };
  return { json, config };
}

// Hand cases: fail loudly if the library (or our config) does not do what the
// agreement test assumes. Only for the real vocabularies (ids checked too).
function selfCheck(tk, a) {
  const expect = (text, want) => {
    const got = tk.encode(text).tokens;
    if (JSON.stringify(got) !== JSON.stringify(want))
      die(`self-check: ${JSON.stringify(text)} gave ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  };
  if (a.bertVocab) {
    if (tk.token_to_id("[CLS]") !== 101 || tk.token_to_id("hello") !== 7592) return;
    if (a.cased) {
      expect("Héllo WORLD!", ["[CLS]", "[UNK]", "[UNK]", "!", "[SEP]"]);
      expect("hello, world", ["[CLS]", "hello", ",", "world", "[SEP]"]);
    } else {
      expect("Héllo WORLD!", ["[CLS]", "hello", "world", "!", "[SEP]"]);
      expect("", ["[CLS]", "[SEP]"]);
      expect("strawberries 中文", ["[CLS]", "straw", "##berries", "中", "文", "[SEP]"]);
    }
  } else {
    if (tk.token_to_id("Hello") !== 15496) return;
    const ids = tk.encode("Hello world it's").ids;
    if (JSON.stringify(ids) !== "[15496,995,340,338]")
      die(`self-check: GPT-2 "Hello world it's" gave ${JSON.stringify(ids)}`);
    expect("", []);
  }
}

const a = parseArgs(process.argv.slice(2));
const lib = path.join(a.modules, "@huggingface", "tokenizers");
let Tokenizer;
try {
  const pkg = JSON.parse(fs.readFileSync(path.join(lib, "package.json"), "utf8"));
  ({ Tokenizer } = await import(pathToFileURL(path.join(lib, pkg.module)).href));
} catch (e) {
  die(`cannot load @huggingface/tokenizers from ${a.modules} (run test/tokenizer/fetch_reference.sh): ${e.message}`);
}
const { json, config } = a.bertVocab ? bertTokenizer(a.bertVocab, a.cased) : gpt2Tokenizer(a.encoder, a.merges);
const tk = new Tokenizer(json, config);
selfCheck(tk, a);

const lines = splitLines(readText(a.lines));
const out = new Array(lines.length);
let tokens = 0;
const t0 = process.hrtime.bigint();
for (let i = 0; i < lines.length; ++i) {
  out[i] = tk.encode(lines[i]).ids;
  tokens += out[i].length;
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;

// One write in chunks; stdout may be a pipe, so wait for it to drain.
const chunk = 4096;
for (let i = 0; i < out.length; i += chunk) {
  const s = out.slice(i, i + chunk).map((ids) => JSON.stringify(ids)).join("\n") + "\n";
  if (!process.stdout.write(s)) await new Promise((r) => process.stdout.once("drain", r));
}
if (a.time) {
  process.stderr.write(JSON.stringify({ lines: lines.length, tokens, seconds,
                                        tokens_per_s: seconds > 0 ? tokens / seconds : 0 }) + "\n");
}
