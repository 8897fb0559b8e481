// The CUDA kernels of the plan's non-GEMM steps (GEMMs are cuBLASLt calls).
// megatron-compile --target cuda lowers this module through NVVM to PTX,
// once per --cuda-arch, and stores the PTX in the artifact
// (compiler/cuda/CudaCodegen.cpp). f32, row-major, dynamic sizes.
//
// Launch shapes: elementwise kernels take one thread per element (any
// block size); row kernels take one block per row, threads striding over
// the row (block size a multiple of 32).
module attributes {gpu.container_module} {
  gpu.module @megatron_kernels {
    // y[i] = 0.5 x (1 + erf(x / sqrt(2)))
    gpu.func @gelu_erf(%x: memref<?xf32>, %y: memref<?xf32>, %n: index) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %v = memref.load %x[%i] : memref<?xf32>
        %half = arith.constant 0.5 : f32
        %one = arith.constant 1.0 : f32
        %inv_sqrt2 = arith.constant 0.70710678118654752 : f32
        %a = arith.mulf %v, %inv_sqrt2 : f32
        %e = math.erf %a : f32
        %e1 = arith.addf %e, %one : f32
        %h = arith.mulf %v, %half : f32
        %g = arith.mulf %h, %e1 : f32
        memref.store %g, %y[%i] : memref<?xf32>
      }
      gpu.return
    }

    // y[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    gpu.func @gelu_tanh(%x: memref<?xf32>, %y: memref<?xf32>, %n: index) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %v = memref.load %x[%i] : memref<?xf32>
        %half = arith.constant 0.5 : f32
        %one = arith.constant 1.0 : f32
        %c = arith.constant 0.044715 : f32
        %k = arith.constant 0.79788456080286536 : f32
        %v2 = arith.mulf %v, %v : f32
        %v3 = arith.mulf %v2, %v : f32
        %cv3 = arith.mulf %v3, %c : f32
        %inner = arith.addf %v, %cv3 : f32
        %scaled = arith.mulf %inner, %k : f32
        %t = math.tanh %scaled : f32
        %t1 = arith.addf %t, %one : f32
        %h = arith.mulf %v, %half : f32
        %g = arith.mulf %h, %t1 : f32
        memref.store %g, %y[%i] : memref<?xf32>
      }
      gpu.return
    }

    // sum = a + b and out = LayerNorm(sum) * gamma + beta, row by row: the
    // residual connection and the LayerNorm after it (two-pass variance).
    gpu.func @add_layer_norm(%a: memref<?xf32>, %b: memref<?xf32>, %gamma: memref<?xf32>,
                             %beta: memref<?xf32>, %sum: memref<?xf32>, %out: memref<?xf32>,
                             %cols: index, %eps: f32) kernel {
      %row = gpu.block_id x
      %tid = gpu.thread_id x
      %threads = gpu.block_dim x
      %zero = arith.constant 0.0 : f32
      %base = arith.muli %row, %cols : index
      %partial = scf.for %j = %tid to %cols step %threads iter_args(%acc = %zero) -> (f32) {
        %k = arith.addi %base, %j : index
        %x = memref.load %a[%k] : memref<?xf32>
        %r = memref.load %b[%k] : memref<?xf32>
        %s = arith.addf %x, %r : f32
        memref.store %s, %sum[%k] : memref<?xf32>
        %next = arith.addf %acc, %s : f32
        scf.yield %next : f32
      }
      %total = gpu.all_reduce add %partial uniform {} : (f32) -> (f32)
      %n_i = arith.index_cast %cols : index to i32
      %n = arith.sitofp %n_i : i32 to f32
      %mean = arith.divf %total, %n : f32
      %squares = scf.for %j = %tid to %cols step %threads iter_args(%acc = %zero) -> (f32) {
        %k = arith.addi %base, %j : index
        %s = memref.load %sum[%k] : memref<?xf32>
        %d = arith.subf %s, %mean : f32
        %d2 = arith.mulf %d, %d : f32
        %next = arith.addf %acc, %d2 : f32
        scf.yield %next : f32
      }
      %ss = gpu.all_reduce add %squares uniform {} : (f32) -> (f32)
      %var = arith.divf %ss, %n : f32
      %ve = arith.addf %var, %eps : f32
      %rstd = math.rsqrt %ve : f32
      scf.for %j = %tid to %cols step %threads {
        %k = arith.addi %base, %j : index
        %s = memref.load %sum[%k] : memref<?xf32>
        %g = memref.load %gamma[%j] : memref<?xf32>
        %bt = memref.load %beta[%j] : memref<?xf32>
        %d = arith.subf %s, %mean : f32
        %nrm = arith.mulf %d, %rstd : f32
        %sc = arith.mulf %nrm, %g : f32
        %o = arith.addf %sc, %bt : f32
        memref.store %o, %out[%k] : memref<?xf32>
      }
      gpu.return
    }

    // out[t, :] = table[ids[t] - offset, :] for ids in [offset, offset +
    // rows), else zeros (a vocab-parallel shard): one block per token.
    // Ids were range-checked on the host before the launch.
    gpu.func @embedding(%table: memref<?xf32>, %ids: memref<?xi64>, %out: memref<?xf32>,
                        %width: index, %rows: index, %offset: index) kernel {
      %t = gpu.block_id x
      %tid = gpu.thread_id x
      %threads = gpu.block_dim x
      %zero = arith.constant 0.0 : f32
      %id64 = memref.load %ids[%t] : memref<?xi64>
      %id = arith.index_cast %id64 : i64 to index
      %row = arith.subi %id, %offset : index
      %c0 = arith.constant 0 : index
      %above = arith.cmpi sge, %row, %c0 : index
      %below = arith.cmpi slt, %row, %rows : index
      %mine = arith.andi %above, %below : i1
      %dst = arith.muli %t, %width : index
      %src = arith.muli %row, %width : index
      scf.for %j = %tid to %width step %threads {
        %k = arith.addi %dst, %j : index
        %v = scf.if %mine -> (f32) {
          %s = arith.addi %src, %j : index
          %x = memref.load %table[%s] : memref<?xf32>
          scf.yield %x : f32
        } else {
          scf.yield %zero : f32
        }
        memref.store %v, %out[%k] : memref<?xf32>
      }
      gpu.return
    }
  }
}
