# -*- Python -*-
# lit configuration for megatron-compiler.

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MEGATRON"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "fixtures", "reference", "truncated_inputs.py", "damaged_artifacts.py", "e2e"]

config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.megatron_obj_root, "test")

config.substitutions.append(("%fixtures", config.megatron_fixtures_dir))
config.substitutions.append(("%python", config.python_executable))
# ptxas (CUDA toolkit) checks the generated PTX; without it those tests are
# unsupported, not failed.
if config.ptxas and os.path.isfile(config.ptxas):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", config.ptxas))

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

tool_dirs = [config.megatron_tools_dir, config.llvm_tools_dir]
tools = ["megatron-opt", "megatron-compile", "megatron-run"]
llvm_config.add_tool_substitutions(tools, tool_dirs)
