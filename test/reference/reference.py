#!/usr/bin/python3
"""Independent reference forward pass for Megatron-BERT and Megatron-GPT2.

Written from the model facts in DESIGN.md section 6 and shares no code with
the C++ compiler/runtime, so end-to-end tests can compare the two.  Reads
every checkpoint format the compiler accepts, turns it into one canonical set
of fp32 weights, and runs the forward pass in float64 with plain torch ops
(matmul, exp, erf, tanh); outputs are cast to float32 and named as Hugging
Face names them.

    reference.py CHECKPOINT --task masked-lm --input-ids "1,2,3;4,5,6" --output-dir DIR

    model = load(path, model_type=None, config_overrides={'n_head': 16})
    outputs = forward(model, 'causal-lm', [[1, 2, 3]])   # {'logits': float32 [1, 3, V]}

Canonical weight names (torch.nn.Linear convention, [out, in]):
    embeddings.{word,position,token_type}
    layers.{i}.{ln1,query,key,value,attn_out,ln2,fc1,fc2}.{weight,bias}
    final_ln.*, pooler.*, mlm.dense.*, mlm.ln.*, mlm.bias, nsp.*,
    classifier.*, qa_outputs.*
(the names of the fixture generator's logical model, so tests can compare
what a loader produced with the generator's logical/*.safetensors.)

Only Debian's python3 with torch and numpy is needed.
"""

import argparse
import codecs
import collections
import dataclasses
import io
import json
import math
import os
import pickle
import re
import struct
import sys
import zipfile

import numpy as np
import torch


class ReferenceError(Exception):
    """A checkpoint, configuration or input the reference cannot use."""


# ---------------------------------------------------------------------------
# Numerics (float64 tensors in, float64 out)
# ---------------------------------------------------------------------------

# What "masked" means: the score is replaced by the most negative finite
# float32, so exp() underflows to exactly 0 next to any real score, and a row
# with every key masked degrades to a uniform distribution instead of NaN.
MASKED_SCORE = float(np.finfo(np.float32).min)


def linear(x, weight, bias=None):
    """x @ W^T + b with W stored [out, in]; x through int8 first where the
    weight says so (see quantize_int8's `activations`)."""
    groups = getattr(weight, 'int8_input_groups', None)
    if groups:
        x = fake_quantize_rows(x, groups)
    y = torch.matmul(x, weight.transpose(0, 1))
    return y if bias is None else y + bias


def layer_norm(x, weight, bias, eps):
    """Normalise over the last axis with the biased variance, as LayerNorm does."""
    mean = x.mean(dim=-1, keepdim=True)
    centered = x - mean
    variance = (centered * centered).mean(dim=-1, keepdim=True)
    return centered / torch.sqrt(variance + eps) * weight + bias


def gelu_erf(x):
    """Exact GELU: x * Phi(x)."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    """The tanh approximation (Megatron's fused bias-GELU, HF's gelu_new)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


GELU = {'erf': gelu_erf, 'tanh': gelu_tanh}


def masked_softmax(scores, allowed):
    """Softmax over the last axis after setting disallowed scores to MASKED_SCORE."""
    scores = torch.where(allowed, scores, torch.full_like(scores, MASKED_SCORE))
    shifted = scores - scores.max(dim=-1, keepdim=True).values
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)


def attention(x, w, heads, allowed):
    """Multi-head self-attention of x [B, S, H] with weights w[query|key|value|attn_out].

    allowed [B, 1, S, S] (or broadcastable) says which key each query may see.
    """
    batch, seq, hidden = x.shape
    head_dim = hidden // heads

    def split_heads(t):                       # [B, S, H] -> [B, heads, S, head_dim]
        return t.reshape(batch, seq, heads, head_dim).transpose(1, 2)

    q = split_heads(linear(x, w['query.weight'], w['query.bias']))
    k = split_heads(linear(x, w['key.weight'], w['key.bias']))
    v = split_heads(linear(x, w['value.weight'], w['value.bias']))
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim)
    context = torch.matmul(masked_softmax(scores, allowed), v)
    context = context.transpose(1, 2).reshape(batch, seq, hidden)
    return linear(context, w['attn_out.weight'], w['attn_out.bias'])


def mlp(x, w, gelu):
    return linear(GELU[gelu](linear(x, w['fc1.weight'], w['fc1.bias'])), w['fc2.weight'], w['fc2.bias'])


def transformer_layer(x, w, config, allowed):
    """Pre-LayerNorm block: x + Attn(LN1(x)), then h + MLP(LN2(h))."""
    h = x + attention(layer_norm(x, w['ln1.weight'], w['ln1.bias'], config.eps), w, config.heads, allowed)
    return h + mlp(layer_norm(h, w['ln2.weight'], w['ln2.bias'], config.eps), w, config.gelu)


def attention_allowed(attention_mask, causal):
    """[B, 1, S, S] bool: key j is visible to query i if its mask is 1 (and j <= i when causal)."""
    seq = attention_mask.shape[1]
    allowed = (attention_mask != 0)[:, None, None, :]
    if causal:
        allowed = allowed & torch.tril(torch.ones(seq, seq, dtype=torch.bool))
    return allowed


# ---------------------------------------------------------------------------
# File readers
# ---------------------------------------------------------------------------

# torch.save files are read here rather than with torch.load: Debian's torch
# 1.13 ignores torch.load's pickle_module and unpickles with the stock pickle,
# which would execute whatever a malicious checkpoint names.  This reader
# resolves only the globals checkpoints use (Megatron pickles its argparse
# args, numpy/python RNG state and torch dtypes next to the weights) and
# refuses anything else (os.system, eval, ...) by name.

STORAGE_DTYPES = {
    'FloatStorage': torch.float32, 'HalfStorage': torch.float16, 'BFloat16Storage': torch.bfloat16,
    'DoubleStorage': torch.float64, 'LongStorage': torch.int64, 'IntStorage': torch.int32,
    'ShortStorage': torch.int16, 'CharStorage': torch.int8, 'ByteStorage': torch.uint8,
    'BoolStorage': torch.bool,
}
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


@dataclasses.dataclass
class _TensorRef:
    """A tensor named by the pickle, materialised once its storage bytes are known."""
    key: str
    dtype: torch.dtype
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, offset, size, stride, *unused):
    key, dtype = storage
    return _TensorRef(key, dtype, offset, tuple(size), tuple(stride))


class _CheckpointUnpickler(pickle.Unpickler):
    # (module, name) -> what it resolves to
    GLOBALS = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('argparse', 'Namespace'): argparse.Namespace,
        ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
        ('torch._utils', '_rebuild_parameter'): lambda data, *unused: data,
        ('torch', 'Size'): tuple,
        ('_codecs', 'encode'): codecs.encode,
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): np.dtype,
        ('numpy.core.multiarray', '_reconstruct'): np.core.multiarray._reconstruct,
        ('numpy.core.multiarray', 'scalar'): np.core.multiarray.scalar,
    }

    def find_class(self, module, name):
        if (module, name) in self.GLOBALS:
            return self.GLOBALS[module, name]
        if module == 'torch' and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if module == 'torch' and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise ReferenceError(f'disallowed pickle global {module}.{name}')

    def persistent_load(self, pid):
        # zip: ('storage', type, key, location, numel); legacy: ... + view metadata
        if pid[0] != 'storage' or not isinstance(pid[1], torch.dtype):
            raise ReferenceError(f'unsupported persistent id {pid[:2]}')
        if len(pid) > 5 and pid[5] is not None:
            raise ReferenceError('legacy storage views are not supported')
        return str(pid[2]), pid[1]


def _tensor_refs(obj):
    if isinstance(obj, _TensorRef):
        yield obj
    elif isinstance(obj, (list, tuple, dict)):
        for value in (obj.values() if isinstance(obj, dict) else obj):
            yield from _tensor_refs(value)


def _materialise(obj, storages):
    """Replace every _TensorRef in a nested container by a tensor over `storages`."""
    if isinstance(obj, _TensorRef):
        data = storages(obj.key, obj.dtype)
        needed = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride)) + 1
        if all(obj.size) and needed > data.numel():
            raise ReferenceError(f'storage {obj.key} holds {data.numel()} elements, tensor needs {needed}')
        return torch.as_strided(data, obj.size, obj.stride, obj.offset)
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v, storages)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, storages) for v in obj)
    return obj


def _itemsize(dtype):
    return torch.empty(0, dtype=dtype).element_size()


def _storage_from_bytes(raw, dtype):
    """A 1-D tensor over a writable copy of little-endian bytes (frombuffer warns on read-only ones)."""
    return torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)


def _load_torch_zip(z):
    """The zip format: <prefix>/data.pkl plus one <prefix>/data/<key> record per storage."""
    pickles = [n for n in z.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pickles) != 1:
        raise ReferenceError('not a torch checkpoint (no data.pkl)')
    prefix = pickles[0][:-len('data.pkl')]
    obj = _CheckpointUnpickler(io.BytesIO(z.read(pickles[0])), encoding='utf-8').load()
    storages = {}                  # tensors that share a storage (tied weights, views) share it here too

    def storage(key, dtype):
        if key not in storages:
            storages[key] = _storage_from_bytes(z.read(f'{prefix}data/{key}'), dtype)
        return storages[key]
    return _materialise(obj, storage)


def _load_torch_legacy(f):
    """The pre-1.6 format: magic, protocol, sys_info and the object as pickles,
    then the sorted storage keys, then per storage an int64 element count and
    its raw little-endian bytes."""
    def next_pickle():
        return _CheckpointUnpickler(f, encoding='utf-8').load()

    if next_pickle() != LEGACY_MAGIC:
        raise ReferenceError('not a torch checkpoint (bad magic number)')
    next_pickle()                                  # protocol version
    next_pickle()                                  # sys_info
    obj = next_pickle()
    dtypes = {ref.key: ref.dtype for ref in _tensor_refs(obj)}
    storages = {}
    for key in next_pickle():                      # the storage keys, in the order of their data
        count = struct.unpack('<q', f.read(8))[0]
        storages[key] = _storage_from_bytes(f.read(count * _itemsize(dtypes[key])), dtypes[key])
    return _materialise(obj, lambda key, dtype: storages[key])


def torch_load(source):
    """The object a torch.save file (path or bytes, zip or legacy format) holds."""
    try:
        with (io.BytesIO(source) if isinstance(source, bytes) else open(source, 'rb')) as f:
            if zipfile.is_zipfile(f):
                with zipfile.ZipFile(f) as z:
                    return _load_torch_zip(z)
            f.seek(0)
            if f.read(4) == b'PK\x03\x04':     # starts like a zip but has no central directory
                raise ReferenceError('truncated file / not a valid zip (no end of central directory)')
            f.seek(0)
            return _load_torch_legacy(f)
    except ReferenceError:
        raise
    except Exception as err:       # whatever a corrupt file makes the zip or pickle reader raise
        raise ReferenceError(f'not a zip / not a torch checkpoint: {type(err).__name__}: {err}') from err


SAFETENSORS_DTYPES = {
    'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
    'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8,
    'U8': torch.uint8, 'BOOL': torch.bool,
}


def read_safetensors(path):
    """{name: tensor} of a .safetensors file: u64 LE header length, JSON header, raw LE data."""
    with open(path, 'rb') as f:
        blob = f.read()
    if len(blob) < 8:
        raise ReferenceError(f'{path}: shorter than the 8-byte header length')
    header_len = struct.unpack('<Q', blob[:8])[0]
    if 8 + header_len > len(blob):
        raise ReferenceError(f'{path}: header length larger than the file')
    header = json.loads(blob[8:8 + header_len])
    data = blob[8 + header_len:]
    header.pop('__metadata__', None)
    tensors, ranges = {}, []
    for name, info in header.items():
        dtype = SAFETENSORS_DTYPES.get(info['dtype'])
        if dtype is None:
            raise ReferenceError(f'{path}: {name} has unsupported dtype {info["dtype"]}')
        begin, end = info['data_offsets']
        numel = math.prod(info['shape'])
        if end > len(data) or end - begin != numel * _itemsize(dtype):
            raise ReferenceError(f'{path}: {name} has inconsistent data_offsets {begin}, {end}')
        ranges.append((begin, end, name))
        tensors[name] = _storage_from_bytes(data[begin:end], dtype).reshape(info['shape'])
    ranges.sort()
    for (_, end, first), (begin, _, second) in zip(ranges, ranges[1:]):
        if begin < end:
            raise ReferenceError(f'{path}: data of {first} and {second} overlap')
    return tensors


# ---------------------------------------------------------------------------
# Checkpoint discovery: path -> raw Megatron rank dicts or an HF state dict
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class RawCheckpoint:
    kind: str                      # 'megatron' or 'hf'
    megatron_ranks: list = None    # top-level dicts, one per TP rank, rank order
    hf_state: dict = None          # flat {name: tensor}
    hf_config: dict = None         # config.json, when there is one


RANK_DIR = re.compile(r'mp_rank_(\d{2})(?:_(\d{3}))?$')
RANK_FILE = 'model_optim_rng.pt'


def _rank_files(names, where):
    """Order rank directories by TP rank; names are the mp_rank_* directory names."""
    ranks = {}
    for name in names:
        m = RANK_DIR.match(name)
        if not m:
            continue
        if m.group(2) not in (None, '000'):
            raise ReferenceError(f'{where}: pipeline-parallel checkpoints ({name}) are not supported')
        ranks[int(m.group(1))] = name
    if not ranks:
        raise ReferenceError(f'{where}: no mp_rank_* directories')
    for r in range(len(ranks)):
        if r not in ranks:
            raise ReferenceError(f'{where}: mp_rank_{r:02d} missing')
    return [ranks[r] for r in range(len(ranks))]


def _iteration_dir(tracker_text):
    """latest_checkpointed_iteration.txt names 'release' or an iteration number."""
    text = tracker_text.strip()
    return 'release' if text == 'release' else f'iter_{int(text):07d}'


def _megatron_dir(root):
    """Rank file paths of a Megatron checkpoint directory (or of one iteration's directory)."""
    tracker = os.path.join(root, 'latest_checkpointed_iteration.txt')
    if os.path.exists(tracker):
        with open(tracker) as f:
            root = os.path.join(root, _iteration_dir(f.read()))
    if os.path.exists(os.path.join(root, RANK_FILE)):
        return [os.path.join(root, RANK_FILE)]
    dirs = _rank_files(sorted(os.listdir(root)), root)
    return [os.path.join(root, d, RANK_FILE) for d in dirs]


def _megatron_zip(path):
    """Rank files inside an NGC-style zip (e.g. release/mp_rank_00/model_optim_rng.pt)."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        by_parent = {}
        for name in names:
            parts = name.split('/')
            if len(parts) >= 2 and parts[-1] == RANK_FILE and RANK_DIR.match(parts[-2]):
                by_parent.setdefault('/'.join(parts[:-2]), []).append(parts[-2])
        if not by_parent:
            raise ReferenceError(f'{path}: zip holds no mp_rank_*/{RANK_FILE}')
        if len(by_parent) > 1:
            trackers = [n for n in names if n.endswith('latest_checkpointed_iteration.txt')]
            if len(trackers) != 1:
                raise ReferenceError(f'{path}: several iterations and no single tracker file')
            tag = _iteration_dir(z.read(trackers[0]).decode())
            by_parent = {p: d for p, d in by_parent.items() if p.split('/')[-1] == tag}
        (parent, dirs), = by_parent.items()
        prefix = parent + '/' if parent else ''
        return [torch_load(z.read(f'{prefix}{d}/{RANK_FILE}')) for d in _rank_files(dirs, path)]


def _hf_dir(root):
    """Flat state dict of a Hugging Face model directory (single file or sharded)."""
    for index_name in ('model.safetensors.index.json', 'pytorch_model.bin.index.json'):
        index_path = os.path.join(root, index_name)
        if os.path.exists(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)['weight_map']
            state = {}
            for shard in sorted(set(weight_map.values())):
                state.update(_read_weight_file(os.path.join(root, shard)))
            missing = sorted(set(weight_map) - set(state))
            if missing:
                raise ReferenceError(f'{index_path}: tensors missing from the shards: {missing}')
            return state
    for name in ('model.safetensors', 'pytorch_model.bin'):
        if os.path.exists(os.path.join(root, name)):
            return _read_weight_file(os.path.join(root, name))
    raise ReferenceError(f'{root}: no model.safetensors or pytorch_model.bin')


def _read_weight_file(path):
    if path.endswith('.safetensors'):
        return read_safetensors(path)
    state = torch_load(path)
    if not isinstance(state, dict):
        raise ReferenceError(f'{path}: not a state dict')
    return state


def read_checkpoint(path):
    """Find out what `path` is and read its tensors."""
    if os.path.isdir(path):
        config_path = os.path.join(path, 'config.json')
        if os.path.exists(config_path):
            with open(config_path) as f:
                return RawCheckpoint('hf', hf_state=_hf_dir(path), hf_config=json.load(f))
        if any(re.fullmatch(r'(model|pytorch_model).*\.(safetensors|bin|json)', n) for n in os.listdir(path)):
            return RawCheckpoint('hf', hf_state=_hf_dir(path))
        return RawCheckpoint('megatron', megatron_ranks=[torch_load(p) for p in _megatron_dir(path)])
    if not os.path.exists(path):
        raise ReferenceError(f'{path}: no such file or directory')
    if path.endswith('.safetensors'):
        return RawCheckpoint('hf', hf_state=read_safetensors(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            is_torch_file = any(n.endswith('/data.pkl') and n.count('/') == 1 for n in z.namelist())
        if not is_torch_file:
            return RawCheckpoint('megatron', megatron_ranks=_megatron_zip(path))
    top = torch_load(path)
    if isinstance(top, dict) and 'model' in top:
        return RawCheckpoint('megatron', megatron_ranks=[top])
    if isinstance(top, dict):
        return RawCheckpoint('hf', hf_state=top)
    raise ReferenceError(f'{path}: neither a Megatron checkpoint nor a state dict')


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

TASKS = {
    'bert': ('base', 'masked-lm', 'pretraining', 'next-sentence', 'sequence-classification',
             'multiple-choice', 'token-classification', 'question-answering', 'causal-lm'),
    'gpt2': ('base', 'causal-lm'),
}

# Hugging Face config keys -> Config fields (GPT2Config also answers to the
# generic names through its attribute_map).
HF_KEYS = {
    'bert': {'hidden_size': 'hidden', 'num_hidden_layers': 'layers',
             'num_attention_heads': 'heads', 'intermediate_size': 'ffn',
             'max_position_embeddings': 'max_positions', 'layer_norm_eps': 'eps',
             'vocab_size': 'vocab_size', 'type_vocab_size': 'type_vocab',
             'is_decoder': 'causal', 'num_labels': 'num_labels',
             'checkpoint_version': 'checkpoint_version'},
    'gpt2': {'n_embd': 'hidden', 'hidden_size': 'hidden', 'n_layer': 'layers',
             'num_hidden_layers': 'layers', 'n_head': 'heads', 'num_attention_heads': 'heads',
             'n_inner': 'ffn', 'n_positions': 'max_positions',
             'max_position_embeddings': 'max_positions', 'layer_norm_epsilon': 'eps',
             'vocab_size': 'vocab_size', 'checkpoint_version': 'checkpoint_version'},
}
ACTIVATION_KEY = {'bert': 'hidden_act', 'gpt2': 'activation_function'}
ACTIVATIONS = {'gelu': 'erf', 'gelu_new': 'tanh', 'gelu_fast': 'tanh', 'gelu_pytorch_tanh': 'tanh'}
MODEL_TYPES = {'bert': 'bert', 'megatron-bert': 'bert', 'megatron_bert': 'bert', 'gpt2': 'gpt2'}

# Values the forward pass cannot honour; refusing is better than a silently
# different model.  key -> the only accepted value.
HF_UNSUPPORTED = {'position_embedding_type': 'absolute', 'add_cross_attention': False,
                  'scale_attn_weights': True, 'scale_attn_by_inverse_layer_idx': False}

# Format defaults (lowest precedence).  Megatron-LM: eps 1e-5, the fused tanh
# GELU in the MLP, torch's erf GELU in the BERT LM head.  Hugging Face: the
# config classes' defaults (MegatronBertConfig: "gelu" = erf, eps 1e-12;
# GPT2Config: "gelu_new" = tanh, eps 1e-5).  head_gelu only matters for BERT.
DEFAULTS = {
    ('megatron', 'bert'): dict(eps=1e-5, gelu='tanh', head_gelu='erf', causal=False),
    ('megatron', 'gpt2'): dict(eps=1e-5, gelu='tanh', head_gelu='erf', causal=True),
    ('hf', 'bert'): dict(eps=1e-12, gelu='erf', head_gelu='erf', causal=False),
    ('hf', 'gpt2'): dict(eps=1e-5, gelu='tanh', head_gelu='erf', causal=True),
}

# HF spelling of each field, for messages.
FIELD_NAMES = {'hidden': 'hidden_size', 'layers': 'num_hidden_layers', 'heads': 'num_attention_heads',
               'ffn': 'intermediate_size', 'max_positions': 'max_position_embeddings',
               'vocab_size': 'vocab_size', 'vocab_rows': 'padded_vocab_size',
               'type_vocab': 'type_vocab_size', 'num_labels': 'num_labels'}


@dataclasses.dataclass
class Config:
    model_type: str          # 'bert' | 'gpt2'
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int
    vocab_rows: int          # rows of the word embedding (Megatron: the padded vocab)
    vocab_size: int          # logits width, <= vocab_rows
    type_vocab: int          # 0 when there is no token-type table
    eps: float
    gelu: str                # MLP GELU: 'erf' | 'tanh'
    head_gelu: str           # BERT LM-head GELU
    causal: bool             # GPT-2, or BERT configured as a decoder
    num_labels: int          # rows of classifier.weight (0 without a classifier)


def _activation(value, source):
    if value not in ACTIVATIONS:
        raise ReferenceError(f'{source}: activation {value!r} is not supported '
                             f'(expected one of {sorted(ACTIVATIONS)})')
    return ACTIVATIONS[value]


def parse_hf_config(json_config, model_type, source):
    """Config fields named by a Hugging Face config (config.json, --config or overrides)."""
    fields = {}
    for key, value in json_config.items():
        if key in HF_UNSUPPORTED and value != HF_UNSUPPORTED[key]:
            raise ReferenceError(f'{source}: {key}={value!r} is not supported')
        if value is None:              # e.g. GPT-2's n_inner: null means 4 * hidden
            continue
        if key in HF_KEYS[model_type]:
            fields[HF_KEYS[model_type][key]] = value
        elif key == ACTIVATION_KEY[model_type]:
            # HF applies hidden_act in the MLP and in the MLM head transform alike.
            fields['gelu'] = fields['head_gelu'] = _activation(value, source)
        elif key == 'id2label':
            fields.setdefault('num_labels', len(value))
    return fields


def parse_megatron_args(args):
    """Config fields recorded in a Megatron checkpoint's argparse args."""
    a = vars(args)
    if a.get('apply_residual_connection_post_layernorm'):
        raise ReferenceError('args: apply_residual_connection_post_layernorm=True is not supported')
    if a.get('position_embedding_type', 'learned_absolute') != 'learned_absolute':
        raise ReferenceError(f'args: position_embedding_type={a["position_embedding_type"]} is not supported')
    if a.get('group_query_attention') or a.get('num_query_groups') not in (None, a.get('num_attention_heads')):
        raise ReferenceError('args: grouped-query attention is not supported')
    fields = {}
    for arg, field in (('hidden_size', 'hidden'), ('num_layers', 'layers'),
                       ('num_attention_heads', 'heads'), ('ffn_hidden_size', 'ffn'),
                       ('max_position_embeddings', 'max_positions'),
                       ('padded_vocab_size', 'vocab_rows'), ('layernorm_epsilon', 'eps')):
        if a.get(arg) is not None:
            fields[field] = a[arg]
    kv, heads, hidden = a.get('kv_channels'), fields.get('heads'), fields.get('hidden')
    if None not in (kv, heads, hidden) and kv * heads != hidden:
        raise ReferenceError('args: kv_channels * num_attention_heads != hidden_size is not supported')
    # The MLP uses the fused tanh GELU unless fusion is off and openai_gelu is
    # not asked for (then torch's erf GELU); the BERT LM head calls torch's erf
    # GELU unless openai_gelu.
    openai = bool(a.get('openai_gelu', False))
    fields['gelu'] = 'erf' if a.get('bias_gelu_fusion', True) is False and not openai else 'tanh'
    fields['head_gelu'] = 'tanh' if openai else 'erf'
    return fields


def detect_model_type(explicit, overrides, raw):
    """--model-type, then a model_type key in the configuration, then the tensor names."""
    for source, value in (('--model-type', explicit), ('overrides', overrides.get('model_type')),
                          ('config.json', (raw.hf_config or {}).get('model_type'))):
        if value is not None:
            if value not in MODEL_TYPES:
                raise ReferenceError(f'{source}: model type {value!r} is not Megatron-BERT or GPT-2')
            return MODEL_TYPES[value]
    if raw.kind == 'hf':
        names = raw.hf_state.keys()
        if any('encoder.layer.' in n for n in names):
            return 'bert'
        if any(re.match(r'(transformer\.)?h\.\d+\.', n) for n in names):
            return 'gpt2'
        raise ReferenceError('cannot tell the model type from the tensor names; pass --model-type')
    # Megatron: only BERT has token types, a pooler, an LM head with a dense layer, an NSP head.
    model = raw.megatron_ranks[0]['model']
    bert_parts = ('pooler', 'tokentype_embeddings', 'lm_head', 'binary_head')
    return 'bert' if any(p in name for name in flatten(model) for p in bert_parts) else 'gpt2'


def merge_layers(*layers):
    """First layer that sets a field wins (layers are given highest precedence first)."""
    merged = {}
    for layer in layers:
        for key, value in layer.items():
            merged.setdefault(key, value)
    return merged


# Canonical tensors every model has (and that the config is measured from).
REQUIRED_WEIGHTS = {'embeddings.word', 'embeddings.position', 'final_ln.weight', 'final_ln.bias'}
LAYER_TENSORS = [f'{module}.{part}' for module in ('ln1', 'query', 'key', 'value', 'attn_out', 'ln2', 'fc1', 'fc2')
                 for part in ('weight', 'bias')]


def require(weights, names, where):
    missing = sorted(set(names) - set(weights))
    if missing:
        raise ReferenceError(f'{where}: missing tensors {missing}')


def layer_count(weights):
    """Number of transformer layers; they must be numbered 0..N-1 and complete."""
    indices = {int(m.group(1)) for m in (re.match(r'layers\.(\d+)\.', n) for n in weights) if m}
    if not indices or indices != set(range(len(indices))):
        raise ReferenceError(f'transformer layers must be numbered 0..N-1, found {sorted(indices)}')
    for i in sorted(indices):
        require(weights, [f'layers.{i}.{t}' for t in LAYER_TENSORS], f'layer {i}')
    return len(indices)


def require_heads(fields, hidden):
    """The head count cannot be read from the weights, so it must be configured."""
    heads = fields.get('heads')
    if heads is None:
        raise ReferenceError('number of attention heads unknown: the checkpoint records none; '
                             'give num_attention_heads (BERT) or n_head (GPT-2)')
    if hidden % heads:
        raise ReferenceError(f'hidden size {hidden} is not divisible by {heads} heads')
    return heads


def finalize_config(model_type, fields, weights):
    """Shape-determined fields come from the weights; configured values must agree."""
    word = weights['embeddings.word']
    measured = {
        'hidden': word.shape[1],
        'vocab_rows': word.shape[0],
        'layers': layer_count(weights),
        'ffn': weights['layers.0.fc1.weight'].shape[0],
        'max_positions': weights['embeddings.position'].shape[0],
        'type_vocab': weights['embeddings.token_type'].shape[0] if 'embeddings.token_type' in weights else 0,
        'num_labels': weights['classifier.weight'].shape[0] if 'classifier.weight' in weights else 0,
    }
    for field, value in measured.items():
        configured = fields.get(field)
        # Every HF config carries num_labels (default 2), but only the
        # sequence/token classifiers have num_labels rows: the multiple-choice
        # classifier has one, and other heads none.
        if field == 'num_labels' and value <= 1:
            continue
        if configured is not None and configured != value:
            raise ReferenceError(f'config/weight shape mismatch ({FIELD_NAMES[field]} {configured} '
                                 f'vs weights {value})')
    heads = require_heads(fields, measured['hidden'])
    vocab_size = fields.get('vocab_size', measured['vocab_rows'])
    if vocab_size > measured['vocab_rows']:
        raise ReferenceError(f'vocab_size {vocab_size} exceeds the {measured["vocab_rows"]} embedding rows')
    return Config(model_type=model_type, heads=heads, vocab_size=vocab_size, eps=float(fields['eps']),
                  gelu=fields['gelu'], head_gelu=fields['head_gelu'],
                  causal=model_type == 'gpt2' or bool(fields['causal']), **measured)


# ---------------------------------------------------------------------------
# Megatron-LM -> canonical weights
# ---------------------------------------------------------------------------

def flatten(tree, prefix=''):
    """{dotted name: tensor} of a nested state dict; non-tensor leaves are dropped."""
    out = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten(value, name + '.'))
        elif torch.is_tensor(value):
            out[name] = value
    return out


# Megatron name (relative to `model`) -> canonical name; {i}/{p} are filled in
# from the match.  Older checkpoints say transformer/attention/*_layernorm,
# newer ones encoder/self_attention/*_norm.
_BLOCK = r'language_model\.(?:transformer|encoder)\.'
_LAYER = _BLOCK + r'layers\.(?P<i>\d+)\.'
_ATTN = r'(?:attention|self_attention)\.'
_P = r'(?P<p>weight|bias)'
MEGATRON_NAMES = [
    (r'language_model\.embedding\.word_embeddings\.weight', 'embeddings.word'),
    (r'language_model\.embedding\.position_embeddings\.weight', 'embeddings.position'),
    (r'language_model\.embedding\.tokentype_embeddings\.weight', 'embeddings.token_type'),
    (_LAYER + r'input_(?:layernorm|norm)\.' + _P, 'layers.{i}.ln1.{p}'),
    (_LAYER + _ATTN + r'query_key_value\.' + _P, 'layers.{i}.qkv.{p}'),
    (_LAYER + _ATTN + r'dense\.' + _P, 'layers.{i}.attn_out.{p}'),
    (_LAYER + r'post_attention_(?:layernorm|norm)\.' + _P, 'layers.{i}.ln2.{p}'),
    (_LAYER + r'mlp\.dense_h_to_4h\.' + _P, 'layers.{i}.fc1.{p}'),
    (_LAYER + r'mlp\.dense_4h_to_h\.' + _P, 'layers.{i}.fc2.{p}'),
    (_BLOCK + r'final_(?:layernorm|norm)\.' + _P, 'final_ln.{p}'),
    (r'language_model\.pooler\.dense\.' + _P, 'pooler.{p}'),
    (r'lm_head\.dense\.' + _P, 'mlm.dense.{p}'),
    (r'lm_head\.layernorm\.' + _P, 'mlm.ln.{p}'),
    (r'lm_head\.bias', 'mlm.bias'),
    (r'binary_head\.' + _P, 'nsp.{p}'),
]

# How tensor parallelism split each canonical tensor: column-parallel and
# vocab-parallel tensors along dim 0, row-parallel weights along dim 1 (their
# bias is whole), everything else replicated.  qkv is handled on its own.
_TP_DIM = [(r'embeddings\.word$', 0), (r'mlm\.bias$', 0), (r'\.fc1\.(weight|bias)$', 0),
           (r'\.attn_out\.weight$', 1), (r'\.fc2\.weight$', 1)]

# Row order of query_key_value per checkpoint_version, as the axes of a
# [., ., ., *rest] view of one rank's rows; the permutation brings them back
# to (3, local heads, head_dim).
QKV_LAYOUTS = {
    0: (lambda local, hd: (3, local, hd), (0, 1, 2)),
    1: (lambda local, hd: (local, hd, 3), (2, 0, 1)),
    2: (lambda local, hd: (local, 3, hd), (1, 0, 2)),
}


def rename_megatron(model_tree, where):
    """Canonical-named tensors of one rank (qkv still fused)."""
    out = {}
    for name, tensor in flatten(model_tree).items():
        for pattern, target in MEGATRON_NAMES:
            m = re.fullmatch(pattern, name)
            if m:
                out[target.format(**m.groupdict())] = tensor
                break
        else:
            raise ReferenceError(f'{where}: unrecognised tensor model.{name}')
    return out


def merge_tp(rank_tensors, name):
    """One full tensor from the per-rank tensors of a non-QKV name."""
    dim = next((d for pattern, d in _TP_DIM if re.search(pattern, name)), None)
    first = rank_tensors[0]
    if dim is None:
        for t in rank_tensors[1:]:
            if t.shape != first.shape or not torch.equal(t, first):
                raise ReferenceError(f'replicated tensor {name} differs between TP ranks')
        return first
    for t in rank_tensors[1:]:
        if t.dim() != first.dim() or any(t.shape[d] != first.shape[d] for d in range(t.dim()) if d != dim):
            raise ReferenceError(f'TP shard shape mismatch in {name}: '
                                 f'{list(first.shape)} vs {list(t.shape)}')
    return torch.cat(rank_tensors, dim)


def split_qkv(rank_tensors, version, heads, hidden):
    """(query, key, value) from each rank's query_key_value rows.

    Each rank holds its own heads in the version's row order over its LOCAL
    heads, so a rank is reordered to (3, local, head_dim) before the ranks are
    joined along the head axis (for v0 the raw shards do not simply concatenate).
    """
    tp = len(rank_tensors)
    if heads % tp:
        raise ReferenceError(f'{heads} heads do not split over {tp} TP ranks')
    local, head_dim = heads // tp, hidden // heads
    shape_of, perm = QKV_LAYOUTS[min(int(version), 2)]
    parts = []
    for t in rank_tensors:
        rest = tuple(t.shape[1:])
        if t.shape[0] != 3 * local * head_dim:
            raise ReferenceError(f'query_key_value has {t.shape[0]} rows per rank, '
                                 f'expected 3 * {local} heads * {head_dim}')
        view = t.reshape(*shape_of(local, head_dim), *rest)
        parts.append(view.permute(*perm, *range(3, 3 + len(rest))))
    qkv = torch.cat(parts, dim=1)                         # (3, heads, head_dim, *rest)
    return [qkv[j].reshape(hidden, *qkv.shape[3:]) for j in range(3)]


def megatron_weights(ranks, fields, version):
    """Canonical full tensors from the TP ranks of a Megatron checkpoint."""
    renamed = [rename_megatron(r['model'], f'mp_rank_{i:02d}') for i, r in enumerate(ranks)]
    names = list(renamed[0])
    for i, r in enumerate(renamed[1:], 1):
        if set(r) != set(names):
            raise ReferenceError(f'mp_rank_{i:02d} holds different tensors than mp_rank_00')
    require(renamed[0], REQUIRED_WEIGHTS, 'mp_rank_00')
    hidden = renamed[0]['embeddings.word'].shape[1]
    heads = require_heads(fields, hidden)
    weights = {}
    for name in names:
        shards = [r[name] for r in renamed]
        if '.qkv.' in name:
            prefix, part = name.split('.qkv.')
            for proj, t in zip(('query', 'key', 'value'), split_qkv(shards, version, heads, hidden)):
                weights[f'{prefix}.{proj}.{part}'] = t
        else:
            weights[name] = merge_tp(shards, name)
    return weights


def check_megatron_ranks(ranks):
    """The number of rank files must match the TP size the args record."""
    args = ranks[0].get('args')
    expected = None
    if args is not None:
        expected = getattr(args, 'tensor_model_parallel_size', None) or getattr(args, 'model_parallel_size', None)
    if expected is not None and expected != len(ranks):
        key = 'tensor_model_parallel_size' if hasattr(args, 'tensor_model_parallel_size') else 'model_parallel_size'
        raise ReferenceError(f'mp_rank_{len(ranks):02d} missing (args.{key} = {expected})'
                             if expected > len(ranks) else
                             f'{len(ranks)} TP ranks but args.{key} = {expected}')


# ---------------------------------------------------------------------------
# Hugging Face -> canonical weights
# ---------------------------------------------------------------------------

HF_BERT_NAMES = [
    (r'embeddings\.word_embeddings\.weight', 'embeddings.word'),
    (r'embeddings\.position_embeddings\.weight', 'embeddings.position'),
    (r'embeddings\.token_type_embeddings\.weight', 'embeddings.token_type'),
    (r'encoder\.layer\.(?P<i>\d+)\.attention\.ln\.' + _P, 'layers.{i}.ln1.{p}'),
    (r'encoder\.layer\.(?P<i>\d+)\.attention\.self\.(?P<proj>query|key|value)\.' + _P, 'layers.{i}.{proj}.{p}'),
    (r'encoder\.layer\.(?P<i>\d+)\.attention\.output\.dense\.' + _P, 'layers.{i}.attn_out.{p}'),
    (r'encoder\.layer\.(?P<i>\d+)\.ln\.' + _P, 'layers.{i}.ln2.{p}'),
    (r'encoder\.layer\.(?P<i>\d+)\.intermediate\.dense\.' + _P, 'layers.{i}.fc1.{p}'),
    (r'encoder\.layer\.(?P<i>\d+)\.output\.dense\.' + _P, 'layers.{i}.fc2.{p}'),
    (r'encoder\.ln\.' + _P, 'final_ln.{p}'),
    (r'pooler\.dense\.' + _P, 'pooler.{p}'),
    (r'cls\.predictions\.bias', 'mlm.bias'),
    (r'cls\.predictions\.transform\.dense\.' + _P, 'mlm.dense.{p}'),
    (r'cls\.predictions\.transform\.LayerNorm\.' + _P, 'mlm.ln.{p}'),
    (r'cls\.predictions\.decoder\.weight', 'tied.mlm.decoder.weight'),
    (r'cls\.predictions\.decoder\.bias', 'tied.mlm.decoder.bias'),
    (r'cls\.seq_relationship\.' + _P, 'nsp.{p}'),
    (r'(?P<head>classifier|qa_outputs)\.' + _P, '{head}.{p}'),
    (r'embeddings\.position_ids', None),          # a buffer older transformers saved
]

# Conv1D weights are stored [in, out]; they are transposed to [out, in].
HF_GPT2_NAMES = [
    (r'wte\.weight', 'embeddings.word'),
    (r'wpe\.weight', 'embeddings.position'),
    (r'h\.(?P<i>\d+)\.ln_1\.' + _P, 'layers.{i}.ln1.{p}'),
    (r'h\.(?P<i>\d+)\.attn\.c_attn\.' + _P, 'layers.{i}.c_attn.{p}'),
    (r'h\.(?P<i>\d+)\.attn\.c_proj\.' + _P, 'layers.{i}.attn_out.{p}'),
    (r'h\.(?P<i>\d+)\.ln_2\.' + _P, 'layers.{i}.ln2.{p}'),
    (r'h\.(?P<i>\d+)\.mlp\.c_fc\.' + _P, 'layers.{i}.fc1.{p}'),
    (r'h\.(?P<i>\d+)\.mlp\.c_proj\.' + _P, 'layers.{i}.fc2.{p}'),
    (r'ln_f\.' + _P, 'final_ln.{p}'),
    (r'lm_head\.weight', 'tied.lm_head.weight'),
    (r'h\.\d+\.attn\.(?:bias|masked_bias)', None),   # causal-mask buffers, not weights
]
HF_CONV1D = re.compile(r'layers\.\d+\.(c_attn|attn_out|fc1|fc2)\.weight$')


def rename_hf(state, rules, strip_prefix):
    out = {}
    for name, tensor in state.items():
        short = name[len(strip_prefix):] if name.startswith(strip_prefix) else name
        for pattern, target in rules:
            m = re.fullmatch(pattern, short)
            if m:
                if target is not None:
                    out[target.format(**m.groupdict())] = tensor
                break
        else:
            raise ReferenceError(f'unrecognised tensor {name}')
    return out


def check_tied(weights, tied_name, name):
    """A stored copy of a tied tensor must equal the tensor it is tied to."""
    copy = weights.pop(tied_name, None)
    if copy is None:
        return
    if name not in weights:
        weights[name] = copy
    elif copy.shape != weights[name].shape or not torch.equal(copy, weights[name]):
        raise ReferenceError(f'{tied_name[len("tied."):]} is stored but differs from {name} it is tied to')


def hf_bert_weights(state):
    weights = rename_hf(state, HF_BERT_NAMES, 'bert.')
    check_tied(weights, 'tied.mlm.decoder.weight', 'embeddings.word')
    check_tied(weights, 'tied.mlm.decoder.bias', 'mlm.bias')
    return weights


def hf_gpt2_weights(state):
    weights = rename_hf(state, HF_GPT2_NAMES, 'transformer.')
    for name in [n for n in weights if HF_CONV1D.search(n)]:
        weights[name] = weights[name].transpose(0, 1)
    for name in [n for n in weights if '.c_attn.' in n]:
        # c_attn's output columns are Q | K | V, each heads x head_dim.
        prefix, part = name.split('.c_attn.')
        for proj, t in zip(('query', 'key', 'value'), weights.pop(name).chunk(3, dim=0)):
            weights[f'{prefix}.{proj}.{part}'] = t
    check_tied(weights, 'tied.lm_head.weight', 'embeddings.word')
    return weights


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

HF_ARCHITECTURE_TASKS = {
    'MegatronBertModel': 'base', 'MegatronBertForMaskedLM': 'masked-lm',
    'MegatronBertForPreTraining': 'pretraining',
    'MegatronBertForNextSentencePrediction': 'next-sentence',
    'MegatronBertForSequenceClassification': 'sequence-classification',
    'MegatronBertForMultipleChoice': 'multiple-choice',
    'MegatronBertForTokenClassification': 'token-classification',
    'MegatronBertForQuestionAnswering': 'question-answering',
    'MegatronBertForCausalLM': 'causal-lm', 'GPT2LMHeadModel': 'causal-lm', 'GPT2Model': 'base',
}


@dataclasses.dataclass
class Model:
    config: Config
    weights: dict            # canonical name -> fp32 tensor
    default_task: str
    # Weights whose linear quantizes its input per row (--quantize-activations):
    # name -> the groups of input columns each row is quantized in (a rank's
    # slice of a row-parallel input has its own scale).
    int8_inputs: dict = dataclasses.field(default_factory=dict)


def load(path, model_type=None, config_overrides=None):
    """Read a checkpoint into canonical fp32 weights and a resolved Config.

    Configuration precedence: config_overrides (Hugging Face key names), then
    the checkpoint's config.json or Megatron args, then the format defaults.
    """
    overrides = dict(config_overrides or {})
    raw = read_checkpoint(path)
    mtype = detect_model_type(model_type, overrides, raw)
    override_fields = parse_hf_config(overrides, mtype, 'overrides')
    if raw.kind == 'megatron':
        ranks = raw.megatron_ranks
        check_megatron_ranks(ranks)
        args = ranks[0].get('args')
        fields = merge_layers(override_fields, parse_megatron_args(args) if args is not None else {},
                              DEFAULTS['megatron', mtype])
        version = float(override_fields.get('checkpoint_version', ranks[0].get('checkpoint_version', 0)))
        weights = megatron_weights(ranks, fields, version)
        default_task = 'masked-lm' if mtype == 'bert' else 'causal-lm'
    else:
        hf_config = raw.hf_config or {}
        fields = merge_layers(override_fields, parse_hf_config(hf_config, mtype, 'config.json'),
                              DEFAULTS['hf', mtype])
        weights = hf_bert_weights(raw.hf_state) if mtype == 'bert' else hf_gpt2_weights(raw.hf_state)
        architectures = hf_config.get('architectures') or []
        default_task = HF_ARCHITECTURE_TASKS.get(architectures[0] if architectures else None,
                                                 'masked-lm' if mtype == 'bert' else 'causal-lm')
    require(weights, REQUIRED_WEIGHTS, path)
    weights = {name: t.detach().to(torch.float32).contiguous() for name, t in weights.items()}
    return Model(finalize_config(mtype, fields, weights), weights, default_task)


# ---------------------------------------------------------------------------
# int8 weight-only quantization (megatron-compile --quantize int8)
# ---------------------------------------------------------------------------

# Linear weights the compiler quantizes; the word embedding (and the LM head
# tied to it) only with --quantize-embeddings.
_QUANTIZED_LINEARS = re.compile(
    r'^(layers\.\d+\.(query|key|value|attn_out|fc1|fc2)|pooler|mlm\.dense|nsp|classifier|qa_outputs)\.weight$')
# Row-parallel weights: with TP each rank holds a [out, in / tp] slice and
# quantizes it on its own, so a per-channel scale covers in / tp columns.
_ROW_PARALLEL = re.compile(r'^layers\.\d+\.(attn_out|fc2)\.weight$')


def fake_quantize(w, groups):
    """w [rows, cols] through symmetric int8 with `groups` scales per row and
    back, in the compiler's float32 arithmetic: scale = max|w| / 127 (1 for
    an all-zero group), q = round-half-away(w / scale) in [-127, 127]."""
    rows, cols = w.shape
    g = w.to(torch.float32).reshape(rows, groups, cols // groups)
    amax = g.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    v = (g / scale).to(torch.float64)
    q = (torch.sign(v) * torch.floor(v.abs() + 0.5)).clamp(-127, 127).to(torch.float32)
    return (q * scale).reshape(rows, cols)


def fake_quantize_rows(x, groups):
    """x [..., in] as `--quantize-activations` quantizes a linear's input at
    run time: each row (each of its `groups` column slices) through the
    weights' symmetric int8 and back, in float32 as the runtime does."""
    return fake_quantize(x.reshape(-1, x.shape[-1]), groups).reshape(x.shape).to(x.dtype)


def quantize_int8(model, group_size=None, embeddings=False, tp=1, activations=False):
    """The model as a `--quantize int8 [--group-size G] [--quantize-embeddings]
    [--quantize-activations] [--tp N]` artifact computes it: quantized
    weights, dequantized, and which linears quantize their input."""
    weights, int8_inputs = dict(model.weights), {}
    for name, w in model.weights.items():
        if not (_QUANTIZED_LINEARS.match(name) or (embeddings and name == 'embeddings.word')):
            continue
        cols = w.shape[1]
        width = group_size or (cols // tp if _ROW_PARALLEL.match(name) else cols)
        if cols % width:
            raise ReferenceError(f'group size {width} does not divide the {cols} columns of {name}')
        weights[name] = fake_quantize(w, cols // width)
        if activations:
            int8_inputs[name] = tp if _ROW_PARALLEL.match(name) else 1
    return dataclasses.replace(model, weights=weights, int8_inputs=int8_inputs)


def _marked(model, name, tensor):
    """tensor (a float64 copy of weight `name`), marked for linear() when its
    linear quantizes its input."""
    if name in model.int8_inputs:
        tensor.int8_input_groups = model.int8_inputs[name]
    return tensor


# ---------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------

# What each task needs beyond the encoder.
_MLM = ['mlm.dense.weight', 'mlm.dense.bias', 'mlm.ln.weight', 'mlm.ln.bias', 'mlm.bias']
_POOLER = ['pooler.weight', 'pooler.bias']
_NSP = ['nsp.weight', 'nsp.bias']
_CLASSIFIER = ['classifier.weight', 'classifier.bias']
TASK_WEIGHTS = {
    'base': [],
    'masked-lm': _MLM,
    'causal-lm': _MLM,
    'pretraining': _MLM + _POOLER + _NSP,
    'next-sentence': _POOLER + _NSP,
    'sequence-classification': _POOLER + _CLASSIFIER,
    'multiple-choice': _POOLER + _CLASSIFIER,
    'token-classification': _CLASSIFIER,
    'question-answering': ['qa_outputs.weight', 'qa_outputs.bias'],
}
# Heads whose output width is fixed by the task.
TASK_HEAD_ROWS = {'next-sentence': ('nsp.weight', 2), 'pretraining': ('nsp.weight', 2),
                  'multiple-choice': ('classifier.weight', 1), 'question-answering': ('qa_outputs.weight', 2)}


def _params(model, prefix=''):
    """float64 copies of the canonical weights under `prefix`, with the prefix removed."""
    return {name[len(prefix):]: _marked(model, name, t.to(torch.float64))
            for name, t in model.weights.items() if name.startswith(prefix)}


def embed(model, input_ids, token_type_ids):
    """word + learned position (0..S-1) + token type where the table exists; no LayerNorm."""
    w = model.weights
    x = w['embeddings.word'].to(torch.float64)[input_ids]
    x = x + w['embeddings.position'].to(torch.float64)[:input_ids.shape[1]]
    if 'embeddings.token_type' in w:
        x = x + w['embeddings.token_type'].to(torch.float64)[token_type_ids]
    return x


def encode(model, input_ids, token_type_ids, attention_mask, causal):
    """Final-LayerNorm output [B, S, H] in float64."""
    config = model.config
    allowed = attention_allowed(attention_mask, causal)
    x = embed(model, input_ids, token_type_ids)
    for i in range(config.layers):
        x = transformer_layer(x, _params(model, f'layers.{i}.'), config, allowed)
    final = _params(model, 'final_ln.')
    return layer_norm(x, final['weight'], final['bias'], config.eps)


def pool(model, hidden):
    """dense + tanh on token 0."""
    p = _params(model, 'pooler.')
    return torch.tanh(linear(hidden[:, 0], p['weight'], p['bias']))


def lm_logits(model, hidden):
    """Tied output layer over the first vocab_size rows of the word embedding."""
    word = model.weights['embeddings.word'][:model.config.vocab_size].to(torch.float64)
    return linear(hidden, _marked(model, 'embeddings.word', word))


def mlm_logits(model, hidden):
    """BERT LM head: dense -> GELU -> LayerNorm -> tied decoder + bias."""
    p = _params(model, 'mlm.')
    h = GELU[model.config.head_gelu](linear(hidden, p['dense.weight'], p['dense.bias']))
    h = layer_norm(h, p['ln.weight'], p['ln.bias'], model.config.eps)
    return lm_logits(model, h) + p['bias'][:model.config.vocab_size]


def head(model, name, x):
    p = _params(model, name + '.')
    return linear(x, p['weight'], p['bias'])


def _as_ids(value, name, ndim):
    t = torch.as_tensor(np.asarray(value), dtype=torch.int64)
    if t.dim() != ndim:
        raise ReferenceError(f'{name} must have {ndim} dimensions, got shape {list(t.shape)}')
    return t


def _check_inputs(model, ids, token_type_ids, attention_mask):
    config = model.config
    if ids.shape[1] > config.max_positions:
        raise ReferenceError(f'sequence length {ids.shape[1]} exceeds {config.max_positions} positions')
    if ids.numel() and (ids.min() < 0 or ids.max() >= config.vocab_rows):
        raise ReferenceError(f'input ids must lie in [0, {config.vocab_rows})')
    for name, t in (('token_type_ids', token_type_ids), ('attention_mask', attention_mask)):
        if t.shape != ids.shape:
            raise ReferenceError(f'{name} shape {list(t.shape)} != input_ids shape {list(ids.shape)}')
    if config.type_vocab and token_type_ids.numel() and (
            token_type_ids.min() < 0 or token_type_ids.max() >= config.type_vocab):
        raise ReferenceError(f'token type ids must lie in [0, {config.type_vocab})')


def forward(model, task, input_ids, token_type_ids=None, attention_mask=None):
    """Outputs of `task` as {Hugging Face output name: float32 numpy array}.

    input_ids is [batch, seq] ([batch, choices, seq] for multiple-choice);
    token_type_ids default to 0, attention_mask to 1 (0 = padding).
    """
    config = model.config
    if task not in TASKS[config.model_type]:
        raise ReferenceError(f'task {task!r} is not one of {", ".join(TASKS[config.model_type])} '
                             f'for {config.model_type}')
    if config.model_type == 'bert':
        missing = [n for n in TASK_WEIGHTS[task] if n not in model.weights]
        if missing:
            raise ReferenceError(f'task {task} needs tensors the checkpoint lacks: {missing}')
        if task in TASK_HEAD_ROWS:
            name, rows = TASK_HEAD_ROWS[task]
            if model.weights[name].shape[0] != rows:
                raise ReferenceError(f'task {task} needs {rows} output rows in {name}, '
                                     f'the checkpoint has {model.weights[name].shape[0]}')

    ndim = 3 if task == 'multiple-choice' else 2
    ids = _as_ids(input_ids, 'input_ids', ndim)
    token_types = torch.zeros_like(ids) if token_type_ids is None else _as_ids(token_type_ids, 'token_type_ids', ndim)
    mask = torch.ones_like(ids) if attention_mask is None else _as_ids(attention_mask, 'attention_mask', ndim)
    batch_shape = ids.shape[:-1]
    # Multiple choice runs every (item, choice) pair as its own sequence.
    ids, token_types, mask = (t.reshape(-1, t.shape[-1]) for t in (ids, token_types, mask))
    _check_inputs(model, ids, token_types, mask)

    causal = config.causal or task == 'causal-lm'
    hidden = encode(model, ids, token_types, mask, causal)
    has_pooler = 'pooler.weight' in model.weights

    if config.model_type == 'gpt2':
        out = {'logits': lm_logits(model, hidden)} if task == 'causal-lm' else {'last_hidden_state': hidden}
    elif task == 'base':
        out = {'last_hidden_state': hidden}
        if has_pooler:
            out['pooler_output'] = pool(model, hidden)
    elif task in ('masked-lm', 'causal-lm'):
        out = {'logits': mlm_logits(model, hidden)}
    elif task == 'pretraining':
        out = {'prediction_logits': mlm_logits(model, hidden),
               'seq_relationship_logits': head(model, 'nsp', pool(model, hidden))}
    elif task == 'next-sentence':
        out = {'logits': head(model, 'nsp', pool(model, hidden))}
    elif task == 'sequence-classification':
        out = {'logits': head(model, 'classifier', pool(model, hidden))}
    elif task == 'multiple-choice':
        out = {'logits': head(model, 'classifier', pool(model, hidden)).reshape(batch_shape)}
    elif task == 'token-classification':
        out = {'logits': head(model, 'classifier', hidden)}
    else:  # question-answering
        span = head(model, 'qa_outputs', hidden)
        out = {'start_logits': span[..., 0], 'end_logits': span[..., 1]}
    return {name: t.to(torch.float32).numpy() for name, t in out.items()}


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_batch(text, nested):
    """'1,2;3,4' -> [[1,2],[3,4]]; nested (multiple choice): '1,2|3,4;5,6|7,8' -> [B, C, S]."""
    def row(s):
        return [int(v) for v in s.split(',')]

    items = [[row(c) for c in item.split('|')] if nested else row(item) for item in text.split(';')]
    array = np.array(items, dtype=object)     # object dtype: a ragged batch stays low-dimensional
    if array.ndim != (3 if nested else 2):
        raise ReferenceError(f'ragged batch {text!r}: every sequence needs the same length')
    return array.astype(np.int64)


def parse_set(assignments):
    """KEY=VALUE -> {key: JSON value, or the plain string when it is not JSON (gelu_new)}."""
    known = set(HF_KEYS['bert']) | set(HF_KEYS['gpt2']) | set(ACTIVATION_KEY.values()) | \
        set(HF_UNSUPPORTED) | {'id2label', 'model_type'}
    out = {}
    for assignment in assignments:
        key, sep, text = assignment.partition('=')
        if not sep or not key or not text:
            raise ReferenceError(f'--set expects KEY=VALUE, got {assignment!r}')
        if key not in known:
            raise ReferenceError(f'--set: unknown configuration key {key!r}')
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description='Reference forward pass for Megatron-BERT / GPT-2 checkpoints.')
    ap.add_argument('checkpoint')
    ap.add_argument('--task', help='default: from the HF architectures, else masked-lm (bert) / causal-lm (gpt2)')
    ap.add_argument('--input-ids', required=True, help='"1,2,3;4,5,6" (multiple choice: "1,2|3,4;5,6|7,8")')
    ap.add_argument('--token-type-ids')
    ap.add_argument('--attention-mask')
    ap.add_argument('--model-type', choices=('bert', 'gpt2'))
    ap.add_argument('--config', help='JSON file of Hugging Face config keys')
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                    help='one config key (highest precedence)')
    ap.add_argument('--quantize', choices=('none', 'int8'), default='none',
                    help='compute with the weights an int8 artifact holds')
    ap.add_argument('--group-size', type=int, help='with --quantize int8: columns per scale')
    ap.add_argument('--quantize-embeddings', action='store_true')
    ap.add_argument('--quantize-activations', action='store_true',
                    help='with --quantize int8: linears quantize their input per row')
    ap.add_argument('--tp', type=int, default=1,
                    help='with --quantize int8: the TP degree of the artifact (ranks quantize their shards)')
    ap.add_argument('--output-dir', required=True)
    opts = ap.parse_args(argv)
    try:
        overrides = {}
        if opts.config:
            with open(opts.config) as f:
                overrides.update(json.load(f))
        overrides.update(parse_set(opts.set))
        model = load(opts.checkpoint, opts.model_type, overrides)
        if opts.quantize == 'int8':
            model = quantize_int8(model, opts.group_size, opts.quantize_embeddings, opts.tp,
                                  opts.quantize_activations)
        task = opts.task or model.default_task
        nested = task == 'multiple-choice'
        inputs = {name: parse_batch(text, nested) if text else None
                  for name, text in (('input_ids', opts.input_ids), ('token_type_ids', opts.token_type_ids),
                                     ('attention_mask', opts.attention_mask))}
        outputs = forward(model, task, **inputs)
    except (ReferenceError, OSError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    os.makedirs(opts.output_dir, exist_ok=True)
    for name, array in outputs.items():
        np.save(os.path.join(opts.output_dir, name + '.npy'), array)
    return 0


if __name__ == '__main__':
    sys.exit(main())
