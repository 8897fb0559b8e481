"""Writes the torch-made inputs of the reader unit tests into OUTDIR.

Usage: make_fixtures.py OUTDIR

For every tensor the C++ tests check, the exact expected bytes (row-major,
contiguous, little-endian) are written by torch itself next to the inputs and
listed in OUTDIR/manifest.json, so the tests compare against values computed
independently of the reader.
"""

import argparse
import collections
import enum
import io
import json
import os
import pickle
import random
import sys
import types
import zipfile

import numpy as np
import torch


# Megatron keeps enums in megatron.*.enums modules and its saved args refer to
# them; register a stand-in module under such a name so pickle can find it.
class AttnMaskType(enum.Enum):
    padding = 1
    causal = 2


for _name in ("megatron", "megatron.model", "megatron.model.enums"):
    sys.modules[_name] = types.ModuleType(_name)
AttnMaskType.__module__ = "megatron.model.enums"
sys.modules["megatron.model.enums"].AttnMaskType = AttnMaskType


def raw_bytes(tensor):
    """The tensor's elements in row-major order, as stored on disk."""
    flat = tensor.detach().contiguous().clone().reshape(-1)
    if flat.numel() == 0:
        return b""
    return flat.view(torch.uint8).numpy().tobytes()


DTYPE_NAMES = {
    torch.float64: "f64", torch.float32: "f32", torch.float16: "f16",
    torch.bfloat16: "bf16", torch.int64: "i64", torch.int32: "i32",
    torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8", torch.bool: "bool",
}


class Manifest:
    def __init__(self, outdir):
        self.outdir = outdir
        self.entries = {}

    def expect(self, fixture, name, tensor):
        """Records what tensor `name` of `fixture` must read back as."""
        stem = f"{fixture}.{name}.bin".replace("/", "_")
        with open(os.path.join(self.outdir, stem), "wb") as f:
            f.write(raw_bytes(tensor))
        entry = {"dtype": DTYPE_NAMES[tensor.dtype],
                 "shape": list(tensor.shape), "bytes": stem}
        if tensor.dtype == torch.float32:
            entry["values"] = tensor.reshape(-1).tolist()
        self.entries.setdefault(fixture, {})[name] = entry

    def write(self):
        with open(os.path.join(self.outdir, "manifest.json"), "w") as f:
            json.dump(self.entries, f, indent=1)


def tensor_zoo():
    """Every dtype, and views: transposed, offset, strided, expanded."""
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(4, 6, generator=g)
    zoo = collections.OrderedDict()
    zoo["f32"] = torch.randn(3, 5, generator=g)
    zoo["f64"] = torch.randn(2, 2, generator=g).double()
    zoo["f16"] = torch.randn(2, 3, generator=g).half()
    zoo["bf16"] = torch.randn(5, generator=g).bfloat16()
    zoo["i64"] = torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4) * 1000003
    zoo["i32"] = torch.arange(-3, 3, dtype=torch.int32)
    zoo["i16"] = torch.arange(-3, 3, dtype=torch.int16)
    zoo["i8"] = torch.arange(-3, 3, dtype=torch.int8)
    zoo["u8"] = torch.arange(250, 256, dtype=torch.uint8)
    zoo["bool"] = torch.tensor([True, False, True])
    zoo["base"] = base
    zoo["transposed"] = base.t()           # shares base's storage
    zoo["sliced"] = base[1:3, 2:5]         # storage offset, non-contiguous
    zoo["row"] = base[2]                   # storage offset, contiguous
    zoo["strided"] = base[:, ::2]
    zoo["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)  # stride 0
    zoo["half_view"] = zoo["f16"].t()[1:]
    zoo["scalar"] = torch.tensor(3.5)
    zoo["empty"] = torch.zeros(0, 3)
    return zoo


def write_zoo(outdir, manifest):
    zoo = tensor_zoo()
    obj = collections.OrderedDict(zoo)
    obj["args"] = argparse.Namespace(hidden_size=8, params_dtype=torch.float16)
    torch.save(obj, os.path.join(outdir, "zoo_zip.pt"))
    torch.save(obj, os.path.join(outdir, "zoo_legacy.pt"),
               _use_new_zipfile_serialization=False)
    for name, tensor in zoo.items():
        manifest.expect("zoo", name, tensor)
    # The same archive with every record deflated, as a re-zipping tool would.
    with zipfile.ZipFile(os.path.join(outdir, "zoo_zip.pt")) as src, \
            zipfile.ZipFile(os.path.join(outdir, "zoo_deflated.pt"), "w",
                            zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))


def megatron_checkpoint(manifest):
    """A tiny checkpoint shaped like Megatron-LM's model_optim_rng.pt."""
    g = torch.Generator().manual_seed(7)

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = torch.nn.LayerNorm(4)
            self.query_key_value = torch.nn.Linear(4, 12)

    encoder = torch.nn.Module()
    encoder.layers = torch.nn.ModuleList([Layer()])
    encoder.final_layernorm = torch.nn.LayerNorm(4)
    with torch.no_grad():
        for p in encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    encoder = encoder.half()
    encoder_state = encoder.state_dict()  # an OrderedDict with _metadata
    encoder_state["layers.0._extra_state"] = io.BytesIO(b"fp8 meta")
    encoder_state["layers.0.unused"] = None

    word = torch.randn(16, 4, generator=g).half()
    position = torch.randn(8, 4, generator=g).half()
    exp_avg = torch.randn(6, generator=g)
    random.seed(3)
    np.random.seed(3)
    checkpoint = {
        "args": argparse.Namespace(
            num_layers=1, hidden_size=4, num_attention_heads=2,
            ffn_hidden_size=16, max_position_embeddings=8,
            padded_vocab_size=16, layernorm_epsilon=1e-5, fp16=True,
            bias_gelu_fusion=True, params_dtype=torch.float16,
            tokenizer_type="GPT2BPETokenizer", attn_mask_type=AttnMaskType.causal,
            data_path=["a", "b"], seed=1234),
        "checkpoint_version": 3.0,
        "iteration": 5000,
        "model": {"language_model": {
            "embedding": {"word_embeddings": {"weight": word},
                          "position_embeddings": {"weight": position}},
            "encoder": encoder_state}},
        "optimizer": {"optimizer": {"state": {0: {"exp_avg": exp_avg}},
                                    "param_groups": [{"lr": 0.1, "params": [0]}]},
                      "fp32_from_fp16_params": [[word.float()]]},
        "rng_state": [{"random_rng_state": random.getstate(),
                       "np_rng_state": np.random.get_state(),
                       "torch_rng_state": torch.get_rng_state(),
                       "rng_tracker_states": {}}],
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    model_names = ["language_model.embedding.word_embeddings.weight",
                   "language_model.embedding.position_embeddings.weight"]
    manifest.expect("megatron", model_names[0], word)
    manifest.expect("megatron", model_names[1], position)
    for key, tensor in encoder_state.items():
        if isinstance(tensor, torch.Tensor):
            manifest.expect("megatron", "language_model.encoder." + key, tensor)
    manifest.expect("megatron", "optimizer.optimizer.state.0.exp_avg", exp_avg)
    return checkpoint


def write_megatron(outdir, manifest):
    checkpoint = megatron_checkpoint(manifest)
    path = os.path.join(outdir, "model_optim_rng.pt")
    torch.save(checkpoint, path)
    torch.save(checkpoint, os.path.join(outdir, "model_optim_rng_legacy.pt"),
               _use_new_zipfile_serialization=False)
    # NGC distributes checkpoints as zips around the .pt, deflated or stored.
    for name, method in (("ngc_deflated.zip", zipfile.ZIP_DEFLATED),
                         ("ngc_stored.zip", zipfile.ZIP_STORED)):
        with zipfile.ZipFile(os.path.join(outdir, name), "w", method) as z:
            z.writestr("latest_checkpointed_iteration.txt", "release")
            z.write(path, "release/mp_rank_00/model_optim_rng.pt")


def write_kitchen_sink(outdir):
    """One object pickled with every protocol, for opcode coverage."""
    shared = [5]
    sink = {
        "int": 1, "neg": -300, "i32": 2**31 - 1, "i64": -2**63,
        "big": 2**70, "negbig": -2**70,
        "float": 1.5, "inf": float("inf"),
        "str": "h\u00e9llo\n\\ \u20ac", "bytes": b"\x00\xff\n", "empty_bytes": b"",
        "bytearray": bytearray(b"ab"),
        "list": [1, [2, 3]], "tuple0": (), "tuple1": (1,), "tuple2": (1, 2),
        "tuple3": (1, 2, 3), "tuple4": (1, 2, 3, 4),
        "set": {7}, "frozenset": frozenset({8}),
        "none": None, "true": True, "false": False,
        "shared": [shared, shared],
        "od": collections.OrderedDict([("b", 1), ("a", 2)]),
        "ns": argparse.Namespace(x=1, dtype=torch.bfloat16),
        "int_keys": {1: "one", 2: "two"},
        "long_list": list(range(1500)),
        "size": torch.Size([2, 3]),
    }
    for protocol in range(6):
        with open(os.path.join(outdir, f"sink_p{protocol}.pkl"), "wb") as f:
            pickle.dump(sink, f, protocol=protocol)


class FakeStorage:
    """Stands for a storage record when hand-making torch archives."""

    def __init__(self, key, numel, storage_type=torch.FloatStorage):
        self.key, self.numel, self.storage_type = key, numel, storage_type


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False,
                     collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def fake_torch_zip(path, obj, records, byteorder=None):
    """A torch-style archive whose data.pkl describes `obj` (FakeTensors over
    FakeStorages) and whose data/ records hold `records` (key -> bytes)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = lambda o: (
        ("storage", o.storage_type, o.key, "cpu", o.numel)
        if isinstance(o, FakeStorage) else None)
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for key, data in records.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")
        if byteorder:
            z.writestr("archive/byteorder", byteorder)


def write_hostile(outdir):
    eight_floats = bytes(32)
    join = lambda name: os.path.join(outdir, name)
    fake_torch_zip(join("short_storage.pt"),
                   {"w": FakeTensor(FakeStorage("0", 2), 0, (3,), (1,))},
                   {"0": eight_floats})
    fake_torch_zip(join("short_record.pt"),
                   {"w": FakeTensor(FakeStorage("0", 16), 0, (4,), (1,))},
                   {"0": eight_floats})
    fake_torch_zip(join("negative_stride.pt"),
                   {"w": FakeTensor(FakeStorage("0", 8), 7, (4,), (-1,))},
                   {"0": eight_floats})
    fake_torch_zip(join("missing_record.pt"),
                   {"w": FakeTensor(FakeStorage("9", 8), 0, (8,), (1,))},
                   {"0": eight_floats})
    fake_torch_zip(join("big_endian.pt"),
                   {"w": FakeTensor(FakeStorage("0", 8), 0, (8,), (1,))},
                   {"0": eight_floats}, byteorder="big")
    fake_torch_zip(join("little_endian.pt"),
                   {"w": FakeTensor(FakeStorage("0", 8), 0, (2, 2), (1, 2))},
                   {"0": bytes(range(32))}, byteorder="little")
    # Storage types as newer torch writes them: a dtype, or untyped bytes.
    fake_torch_zip(join("storage_types.pt"),
                   {"h": FakeTensor(FakeStorage("0", 4, torch.float16), 1, (2,), (1,)),
                    "u": FakeTensor(FakeStorage("1", 3, torch.UntypedStorage), 0, (3,), (1,))},
                   {"0": bytes(range(8)), "1": b"xyz"})
    with zipfile.ZipFile(join("no_data_pkl.zip"), "w") as z:
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", eight_floats)


def write_legacy_views(outdir):
    """A legacy file whose storage is a view of a larger one (torch < 1.0
    storage views): root '7' holds 0..5, view '8' is its elements 2..4."""
    root = FakeStorage("7", 6)
    view = FakeStorage("7", 6)
    view.view_metadata = ("8", 2, 3)
    with open(os.path.join(outdir, "legacy_view.pt"), "wb") as f:
        for header in (0x1950a86a20f9469cfc6c, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 8}}):
            pickle.dump(header, f, protocol=2)
        pickler = pickle.Pickler(f, protocol=2)
        pickler.persistent_id = lambda o: (
            ("storage", o.storage_type, o.key, "cpu", o.numel,
             getattr(o, "view_metadata", None))
            if isinstance(o, FakeStorage) else None)
        pickler.dump({"whole": FakeTensor(root, 0, (6,), (1,)),
                      "view": FakeTensor(view, 1, (2,), (1,))})
        pickle.dump(["7"], f, protocol=2)
        f.write((6).to_bytes(8, "little"))
        f.write(torch.arange(6, dtype=torch.float32).numpy().tobytes())


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    manifest = Manifest(outdir)
    write_zoo(outdir, manifest)
    write_megatron(outdir, manifest)
    write_kitchen_sink(outdir)
    write_hostile(outdir)
    write_legacy_views(outdir)
    manifest.write()


if __name__ == "__main__":
    main()
