// The CUDA kernels of the plan's non-GEMM steps (GEMMs are cuBLASLt calls).
// megatron-compile --target cuda lowers this module through NVVM to PTX,
// once per --cuda-arch, and stores the PTX in the artifact
// (compiler/cuda/CudaCodegen.cpp). f32, row-major, dynamic sizes.
//
// Launch shapes: elementwise kernels take one thread per element (any
// block size); row kernels take one block per row, threads striding over
// the row (block size a multiple of 32). What several kernels compute is a
// func.func of internal linkage, inlined into each.
//
// `past`, the tokens cached before the call, is read from device memory
// (past_ref[0], written before each call), not passed by value: a decode
// step's launches are then the same from step to step, and replay as one
// CUDA graph.
module attributes {gpu.container_module} {
  gpu.module @megatron_kernels {
    // out16[i] = v rounded to f16 (half = 1) or bf16 (half = 2), to nearest
    // even, as raw bits: what a 16-bit linear reads; nothing for half = 0.
    func.func private @store_rounded(%v: f32, %out16: memref<?xi16>, %i: index, %half: i32)
        attributes {llvm.linkage = #llvm.linkage<internal>} {
      %none = arith.constant 0 : i32
      %rounded = arith.cmpi ne, %half, %none : i32
      scf.if %rounded {
        %f16_kind = arith.constant 1 : i32
        %to_f16 = arith.cmpi eq, %half, %f16_kind : i32
        %h = arith.truncf %v : f32 to f16
        %hb = arith.bitcast %h : f16 to i16
        %r = arith.truncf %v : f32 to bf16
        %rb = arith.bitcast %r : bf16 to i16
        %bits = arith.select %to_f16, %hb, %rb : i16
        memref.store %bits, %out16[%i] : memref<?xi16>
      }
      return
    }

    // past_ref[0], the tokens cached before the call.
    func.func private @cached_tokens(%past_ref: memref<?xi64>) -> index
        attributes {llvm.linkage = #llvm.linkage<internal>} {
      %c0 = arith.constant 0 : index
      %word = memref.load %past_ref[%c0] : memref<?xi64>
      %past = arith.index_cast %word : i64 to index
      return %past : index
    }

    // 0.5 v (1 + erf(v / sqrt(2)))
    func.func private @gelu_erf(%v: f32) -> f32
        attributes {llvm.linkage = #llvm.linkage<internal>} {
      %half = arith.constant 0.5 : f32
      %one = arith.constant 1.0 : f32
      %inv_sqrt2 = arith.constant 0.70710678118654752 : f32
      %a = arith.mulf %v, %inv_sqrt2 : f32
      %e = math.erf %a : f32
      %e1 = arith.addf %e, %one : f32
      %h = arith.mulf %v, %half : f32
      %g = arith.mulf %h, %e1 : f32
      return %g : f32
    }

    // 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
    func.func private @gelu_tanh(%v: f32) -> f32
        attributes {llvm.linkage = #llvm.linkage<internal>} {
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
      return %g : f32
    }

    // y[i] = GELU(x[i]), erf's or (%tanh) its tanh approximation. With
    // %half 1 (f16) or 2 (bf16), y16 gets it rounded too: the input of a
    // 16-bit linear that comes next.
    gpu.func @gelu(%x: memref<?xf32>, %y: memref<?xf32>, %y16: memref<?xi16>, %n: index,
                   %tanh: i1, %half: i32) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %v = memref.load %x[%i] : memref<?xf32>
        %g = scf.if %tanh -> (f32) {
          %t = func.call @gelu_tanh(%v) : (f32) -> f32
          scf.yield %t : f32
        } else {
          %e = func.call @gelu_erf(%v) : (f32) -> f32
          scf.yield %e : f32
        }
        memref.store %g, %y[%i] : memref<?xf32>
        func.call @store_rounded(%g, %y16, %i, %half) :
            (f32, memref<?xi16>, index, i32) -> ()
      }
      gpu.return
    }

    // y[i] = a[i] + b[i mod nb]: a residual add, or a row vector (nb = the
    // last dimension) broadcast over a matrix.
    gpu.func @add(%a: memref<?xf32>, %b: memref<?xf32>, %y: memref<?xf32>, %n: index,
                  %nb: index) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %j = arith.remui %i, %nb : index
        %x = memref.load %a[%i] : memref<?xf32>
        %r = memref.load %b[%j] : memref<?xf32>
        %s = arith.addf %x, %r : f32
        memref.store %s, %y[%i] : memref<?xf32>
      }
      gpu.return
    }

    gpu.func @tanh(%x: memref<?xf32>, %y: memref<?xf32>, %n: index) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %v = memref.load %x[%i] : memref<?xf32>
        %t = math.tanh %v : f32
        memref.store %t, %y[%i] : memref<?xf32>
      }
      gpu.return
    }

    // y[i] = x[i] rounded to bf16 (to nearest, ties to even): a linear's
    // input for the tensor cores when its matrix is bf16.
    gpu.func @to_bf16(%x: memref<?xf32>, %y: memref<?xbf16>, %n: index) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %v = memref.load %x[%i] : memref<?xf32>
        %b = arith.truncf %v : f32 to bf16
        memref.store %b, %y[%i] : memref<?xbf16>
      }
      gpu.return
    }

    // y[i] = x[i] rounded to f16 (to nearest, ties to even), for an f16
    // matrix as to_bf16 for a bf16 one.
    gpu.func @to_f16(%x: memref<?xf32>, %y: memref<?xf16>, %n: index) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %v = memref.load %x[%i] : memref<?xf32>
        %h = arith.truncf %v : f32 to f16
        memref.store %h, %y[%i] : memref<?xf16>
      }
      gpu.return
    }

    // out = LayerNorm(x) * gamma + beta, row by row (two-pass variance).
    // With %half 1 (f16) or 2 (bf16), out16 gets the result rounded to it
    // too (raw bits): the input of a 16-bit linear that comes next, which
    // then needs no to_f16 / to_bf16 launch of its own.
    gpu.func @layer_norm(%x: memref<?xf32>, %gamma: memref<?xf32>, %beta: memref<?xf32>,
                         %out: memref<?xf32>, %out16: memref<?xi16>, %cols: index, %eps: f32,
                         %half: i32) kernel {
      %row = gpu.block_id x
      %tid = gpu.thread_id x
      %threads = gpu.block_dim x
      %zero = arith.constant 0.0 : f32
      %base = arith.muli %row, %cols : index
      %partial = scf.for %j = %tid to %cols step %threads iter_args(%acc = %zero) -> (f32) {
        %k = arith.addi %base, %j : index
        %v = memref.load %x[%k] : memref<?xf32>
        %next = arith.addf %acc, %v : f32
        scf.yield %next : f32
      }
      %total = gpu.all_reduce add %partial uniform {} : (f32) -> (f32)
      %n_i = arith.index_cast %cols : index to i32
      %n = arith.sitofp %n_i : i32 to f32
      %mean = arith.divf %total, %n : f32
      %squares = scf.for %j = %tid to %cols step %threads iter_args(%acc = %zero) -> (f32) {
        %k = arith.addi %base, %j : index
        %v = memref.load %x[%k] : memref<?xf32>
        %d = arith.subf %v, %mean : f32
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
        %v = memref.load %x[%k] : memref<?xf32>
        %g = memref.load %gamma[%j] : memref<?xf32>
        %bt = memref.load %beta[%j] : memref<?xf32>
        %d = arith.subf %v, %mean : f32
        %nrm = arith.mulf %d, %rstd : f32
        %sc = arith.mulf %nrm, %g : f32
        %o = arith.addf %sc, %bt : f32
        memref.store %o, %out[%k] : memref<?xf32>
        func.call @store_rounded(%o, %out16, %k, %half) :
            (f32, memref<?xi16>, index, i32) -> ()
      }
      gpu.return
    }

    // ids[i] = past + i mod seq: the positions of new tokens after `past`
    // cached ones.
    gpu.func @positions(%ids: memref<?xi64>, %n: index, %seq: index,
                       %past_ref: memref<?xi64>) kernel {
      %past = func.call @cached_tokens(%past_ref) : (memref<?xi64>) -> index
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %s = arith.remui %i, %seq : index
        %p = arith.addi %s, %past : index
        %v = arith.index_cast %p : index to i64
        memref.store %v, %ids[%i] : memref<?xi64>
      }
      gpu.return
    }

    // Appends the new keys and values of the fused QKV projection [batch,
    // seq, 3, heads, dim] to the caches [batch, heads, capacity, dim] at
    // row `past`: one thread per element of K (and of V), n = batch * seq
    // * heads * dim, in QKV's order (coalesced reads).
    gpu.func @kv_append(%qkv: memref<?xf32>, %k_cache: memref<?xf32>, %v_cache: memref<?xf32>,
                        %n: index, %seq: index, %heads: index, %dim: index, %capacity: index,
                        %past_ref: memref<?xi64>) kernel {
      %past = func.call @cached_tokens(%past_ref) : (memref<?xi64>) -> index
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %d = arith.remui %i, %dim : index
        %t = arith.divui %i, %dim : index
        %h = arith.remui %t, %heads : index
        %bs = arith.divui %t, %heads : index
        %s = arith.remui %bs, %seq : index
        %b = arith.divui %bs, %seq : index
        %width = arith.muli %heads, %dim : index
        %c3 = arith.constant 3 : index
        %row = arith.muli %width, %c3 : index
        %r0 = arith.muli %bs, %row : index
        %hd = arith.muli %h, %dim : index
        %r1 = arith.addi %r0, %width : index
        %r2 = arith.addi %r1, %hd : index
        %k_src = arith.addi %r2, %d : index
        %v_src = arith.addi %k_src, %width : index
        %bh0 = arith.muli %b, %heads : index
        %bh = arith.addi %bh0, %h : index
        %c0 = arith.muli %bh, %capacity : index
        %c1 = arith.addi %c0, %past : index
        %c2 = arith.addi %c1, %s : index
        %c4 = arith.muli %c2, %dim : index
        %dst = arith.addi %c4, %d : index
        %kv = memref.load %qkv[%k_src] : memref<?xf32>
        %vv = memref.load %qkv[%v_src] : memref<?xf32>
        memref.store %kv, %k_cache[%dst] : memref<?xf32>
        memref.store %vv, %v_cache[%dst] : memref<?xf32>
      }
      gpu.return
    }

    // softmax(q K^T * scale + mask) V for many queries (a prefill, BERT),
    // one warp per (batch, query, head):
    // warp w = (b * seq + s) * heads + h, `warps` of them in blocks of whole
    // warps. Lane l holds dimensions l, l + 32, l + 64 and l + 96 of q and
    // of the result (head dimensions up to 128). Keys go by one at a time:
    // the warp reads the key's K and V rows whole (coalesced), sums the
    // score across lanes with shuffles, and keeps an online softmax (a
    // running maximum and sum rescale the result), so any number of keys
    // fits. Q comes from the fused QKV projection [batch, seq, 3, heads,
    // dim]; K and V (past + seq keys) from `keys_src` / `values_src` at b *
    // kv_batch + h * kv_head + key * kv_row (the projection itself, or the
    // caches); mask is [batch, past + seq]. Masked
    // keys (causal: key > s + past; padding: mask[b, key] == 0) score the
    // lowest float, as on the CPU. f32 artifacts take it (exact f32); 16-bit
    // ones, the tensor-core kernel of FlashAttention.cpp for heads of 64 or
    // 128 dimensions.
    gpu.func @attention(%qkv: memref<?xf32>, %keys_src: memref<?xf32>,
                        %values_src: memref<?xf32>, %mask: memref<?xi64>, %out: memref<?xf32>,
                        %seq: index, %heads: index, %dim: index, %past_ref: memref<?xi64>,
                        %kv_batch: index, %kv_head: index, %kv_row: index, %scale: f32,
                        %causal: i1, %has_mask: i1, %warps: index) kernel {
      %past = func.call @cached_tokens(%past_ref) : (memref<?xi64>) -> index
      %keys = arith.addi %past, %seq : index
      %tid = gpu.thread_id x
      %threads = gpu.block_dim x
      %blk = gpu.block_id x
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c3 = arith.constant 3 : index
      %c32 = arith.constant 32 : index
      %c64 = arith.constant 64 : index
      %c96 = arith.constant 96 : index
      %zero = arith.constant 0.0 : f32
      %one = arith.constant 1.0 : f32
      %lowest = arith.constant -3.40282347e+38 : f32
      %false = arith.constant false
      %zero_id = arith.constant 0 : i64
      %i32_32 = arith.constant 32 : i32
      %lane = arith.remui %tid, %c32 : index
      %warp_in_block = arith.divui %tid, %c32 : index
      %warps_per_block = arith.divui %threads, %c32 : index
      %w0 = arith.muli %blk, %warps_per_block : index
      %w = arith.addi %w0, %warp_in_block : index
      %inside = arith.cmpi ult, %w, %warps : index
      scf.if %inside {
        %h = arith.remui %w, %heads : index
        %bs = arith.divui %w, %heads : index
        %s = arith.remui %bs, %seq : index
        %b = arith.divui %bs, %seq : index
        %width = arith.muli %heads, %dim : index
        %row = arith.muli %width, %c3 : index
        %hd = arith.muli %h, %dim : index
        %q0 = arith.muli %bs, %row : index
        %qbase = arith.addi %q0, %hd : index
        %kb0 = arith.muli %b, %kv_batch : index
        %kb1 = arith.muli %h, %kv_head : index
        %kvbase = arith.addi %kb0, %kb1 : index
        %last = arith.addi %s, %past : index
        %mrow = arith.muli %b, %keys : index
        // This lane's dimensions, clamped into the row for the loads; the
        // ones past `dim` hold q = 0 and are not stored.
        %top = arith.subi %dim, %c1 : index
        %d0 = arith.addi %lane, %c0 : index
        %d1 = arith.addi %lane, %c32 : index
        %d2 = arith.addi %lane, %c64 : index
        %d3 = arith.addi %lane, %c96 : index
        %in0 = arith.cmpi ult, %d0, %dim : index
        %in1 = arith.cmpi ult, %d1, %dim : index
        %in2 = arith.cmpi ult, %d2, %dim : index
        %in3 = arith.cmpi ult, %d3, %dim : index
        %e0 = arith.minui %d0, %top : index
        %e1 = arith.minui %d1, %top : index
        %e2 = arith.minui %d2, %top : index
        %e3 = arith.minui %d3, %top : index
        %qi0 = arith.addi %qbase, %e0 : index
        %qi1 = arith.addi %qbase, %e1 : index
        %qi2 = arith.addi %qbase, %e2 : index
        %qi3 = arith.addi %qbase, %e3 : index
        %ql0 = memref.load %qkv[%qi0] : memref<?xf32>
        %ql1 = memref.load %qkv[%qi1] : memref<?xf32>
        %ql2 = memref.load %qkv[%qi2] : memref<?xf32>
        %ql3 = memref.load %qkv[%qi3] : memref<?xf32>
        %qv0 = arith.select %in0, %ql0, %zero : f32
        %qv1 = arith.select %in1, %ql1, %zero : f32
        %qv2 = arith.select %in2, %ql2, %zero : f32
        %qv3 = arith.select %in3, %ql3, %zero : f32
        %res:6 = scf.for %j = %c0 to %keys step %c1
            iter_args(%m = %lowest, %l = %zero, %a0 = %zero, %a1 = %zero, %a2 = %zero,
                      %a3 = %zero) -> (f32, f32, f32, f32, f32, f32) {
          %kr = arith.muli %j, %kv_row : index
          %kb = arith.addi %kvbase, %kr : index
          %ki0 = arith.addi %kb, %e0 : index
          %ki1 = arith.addi %kb, %e1 : index
          %ki2 = arith.addi %kb, %e2 : index
          %ki3 = arith.addi %kb, %e3 : index
          %k0 = memref.load %keys_src[%ki0] : memref<?xf32>
          %k1 = memref.load %keys_src[%ki1] : memref<?xf32>
          %k2 = memref.load %keys_src[%ki2] : memref<?xf32>
          %k3 = memref.load %keys_src[%ki3] : memref<?xf32>
          %p0 = arith.mulf %qv0, %k0 : f32
          %p1 = math.fma %qv1, %k1, %p0 : f32
          %p2 = math.fma %qv2, %k2, %p1 : f32
          %p3 = math.fma %qv3, %k3, %p2 : f32
          %c16_i = arith.constant 16 : i32
          %c8_i = arith.constant 8 : i32
          %c4_i = arith.constant 4 : i32
          %c2_i = arith.constant 2 : i32
          %c1_i = arith.constant 1 : i32
          %x16, %v16 = gpu.shuffle xor %p3, %c16_i, %i32_32 : f32
          %r16 = arith.addf %p3, %x16 : f32
          %x8, %v8 = gpu.shuffle xor %r16, %c8_i, %i32_32 : f32
          %r8 = arith.addf %r16, %x8 : f32
          %x4, %v4 = gpu.shuffle xor %r8, %c4_i, %i32_32 : f32
          %r4 = arith.addf %r8, %x4 : f32
          %x2, %v2 = gpu.shuffle xor %r4, %c2_i, %i32_32 : f32
          %r2 = arith.addf %r4, %x2 : f32
          %x1, %v1 = gpu.shuffle xor %r2, %c1_i, %i32_32 : f32
          %dot = arith.addf %r2, %x1 : f32
          %score = arith.mulf %dot, %scale : f32
          %future = arith.cmpi ugt, %j, %last : index
          %hidden = arith.andi %causal, %future : i1
          %padded = scf.if %has_mask -> (i1) {
            %mi = arith.addi %mrow, %j : index
            %mv = memref.load %mask[%mi] : memref<?xi64>
            %off = arith.cmpi eq, %mv, %zero_id : i64
            scf.yield %off : i1
          } else {
            scf.yield %false : i1
          }
          %masked = arith.ori %hidden, %padded : i1
          %sc = arith.select %masked, %lowest, %score : f32
          %mnew = arith.maximumf %m, %sc : f32
          %dm = arith.subf %m, %mnew : f32
          %corr = math.exp %dm : f32
          %ds = arith.subf %sc, %mnew : f32
          %pj = math.exp %ds : f32
          %lc = arith.mulf %l, %corr : f32
          %lnew = arith.addf %lc, %pj : f32
          %vi0 = arith.addi %kb, %e0 : index
          %vi1 = arith.addi %kb, %e1 : index
          %vi2 = arith.addi %kb, %e2 : index
          %vi3 = arith.addi %kb, %e3 : index
          %v0 = memref.load %values_src[%vi0] : memref<?xf32>
          %vv1 = memref.load %values_src[%vi1] : memref<?xf32>
          %vv2 = memref.load %values_src[%vi2] : memref<?xf32>
          %vv3 = memref.load %values_src[%vi3] : memref<?xf32>
          %s0 = arith.mulf %a0, %corr : f32
          %s1 = arith.mulf %a1, %corr : f32
          %s2 = arith.mulf %a2, %corr : f32
          %s3 = arith.mulf %a3, %corr : f32
          %n0 = math.fma %pj, %v0, %s0 : f32
          %n1 = math.fma %pj, %vv1, %s1 : f32
          %n2 = math.fma %pj, %vv2, %s2 : f32
          %n3 = math.fma %pj, %vv3, %s3 : f32
          scf.yield %mnew, %lnew, %n0, %n1, %n2, %n3 : f32, f32, f32, f32, f32, f32
        }
        %inv = arith.divf %one, %res#1 : f32
        %o0 = arith.muli %bs, %width : index
        %obase = arith.addi %o0, %hd : index
        %r0 = arith.mulf %res#2, %inv : f32
        %r1 = arith.mulf %res#3, %inv : f32
        %r2 = arith.mulf %res#4, %inv : f32
        %r3 = arith.mulf %res#5, %inv : f32
        scf.if %in0 {
          %oi = arith.addi %obase, %d0 : index
          memref.store %r0, %out[%oi] : memref<?xf32>
        }
        scf.if %in1 {
          %oi = arith.addi %obase, %d1 : index
          memref.store %r1, %out[%oi] : memref<?xf32>
        }
        scf.if %in2 {
          %oi = arith.addi %obase, %d2 : index
          memref.store %r2, %out[%oi] : memref<?xf32>
        }
        scf.if %in3 {
          %oi = arith.addi %obase, %d3 : index
          memref.store %r3, %out[%oi] : memref<?xf32>
        }
      }
      gpu.return
    }

    // The attention kernel's arguments and result for few queries (a decode
    // step's one per sequence): one block per (batch, query, head), blockIdx
    // = (b * seq + s) * heads + h, its threads spread over the keys (scores
    // of up to 4096 keys in shared memory), then over the dimensions. With
    // %append (a decode step through the caches: seq = 1), the block first
    // writes its head's new key and value to the caches at row past, which
    // spares kv_append's launch. %half and out16 as layer_norm's.
    gpu.func @decode_attention(%qkv: memref<?xf32>, %keys_src: memref<?xf32>,
                        %values_src: memref<?xf32>, %mask: memref<?xi64>, %out: memref<?xf32>,
                        %seq: index, %heads: index, %dim: index, %past_ref: memref<?xi64>,
                        %kv_batch: index, %kv_head: index, %kv_row: index, %scale: f32,
                        %causal: i1, %has_mask: i1, %append: i1, %out16: memref<?xi16>,
                        %half: i32)
        workgroup(%p: memref<4096xf32, #gpu.address_space<workgroup>>) kernel {
      %past = func.call @cached_tokens(%past_ref) : (memref<?xi64>) -> index
      %keys = arith.addi %past, %seq : index
      %blk = gpu.block_id x
      %tid = gpu.thread_id x
      %threads = gpu.block_dim x
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c3 = arith.constant 3 : index
      %zero = arith.constant 0.0 : f32
      %one = arith.constant 1.0 : f32
      %lowest = arith.constant -3.40282347e+38 : f32
      %false = arith.constant false
      %zero_id = arith.constant 0 : i64
      %h = arith.remui %blk, %heads : index
      %bs = arith.divui %blk, %heads : index
      %s = arith.remui %bs, %seq : index
      %b = arith.divui %bs, %seq : index
      %width = arith.muli %heads, %dim : index
      %row = arith.muli %width, %c3 : index
      %hd = arith.muli %h, %dim : index
      %q0 = arith.muli %bs, %row : index
      %qbase = arith.addi %q0, %hd : index
      %kb0 = arith.muli %b, %kv_batch : index
      %kb1 = arith.muli %h, %kv_head : index
      %kvbase = arith.addi %kb0, %kb1 : index
      scf.if %append {
        %at = arith.muli %past, %kv_row : index
        %dst = arith.addi %kvbase, %at : index
        %ksrc = arith.addi %qbase, %width : index
        %vsrc = arith.addi %ksrc, %width : index
        scf.for %d = %tid to %dim step %threads {
          %ki = arith.addi %ksrc, %d : index
          %vi = arith.addi %vsrc, %d : index
          %di = arith.addi %dst, %d : index
          %kv = memref.load %qkv[%ki] : memref<?xf32>
          %vv = memref.load %qkv[%vi] : memref<?xf32>
          memref.store %kv, %keys_src[%di] : memref<?xf32>
          memref.store %vv, %values_src[%di] : memref<?xf32>
        }
        gpu.barrier
      }
      %last = arith.addi %s, %past : index
      %mrow = arith.muli %b, %keys : index
      %localmax = scf.for %j = %tid to %keys step %threads iter_args(%m = %lowest) -> (f32) {
        %kr = arith.muli %j, %kv_row : index
        %kbase = arith.addi %kvbase, %kr : index
        %dot = scf.for %d = %c0 to %dim step %c1 iter_args(%acc = %zero) -> (f32) {
          %qi = arith.addi %qbase, %d : index
          %ki = arith.addi %kbase, %d : index
          %q = memref.load %qkv[%qi] : memref<?xf32>
          %k = memref.load %keys_src[%ki] : memref<?xf32>
          %next = math.fma %q, %k, %acc : f32
          scf.yield %next : f32
        }
        %score = arith.mulf %dot, %scale : f32
        %future = arith.cmpi ugt, %j, %last : index
        %hidden = arith.andi %causal, %future : i1
        %padded = scf.if %has_mask -> (i1) {
          %mi = arith.addi %mrow, %j : index
          %mv = memref.load %mask[%mi] : memref<?xi64>
          %off = arith.cmpi eq, %mv, %zero_id : i64
          scf.yield %off : i1
        } else {
          scf.yield %false : i1
        }
        %masked = arith.ori %hidden, %padded : i1
        %v = arith.select %masked, %lowest, %score : f32
        memref.store %v, %p[%j] : memref<4096xf32, #gpu.address_space<workgroup>>
        %m2 = arith.maximumf %m, %v : f32
        scf.yield %m2 : f32
      }
      %max = gpu.all_reduce maximumf %localmax uniform {} : (f32) -> (f32)
      %localsum = scf.for %j = %tid to %keys step %threads iter_args(%acc = %zero) -> (f32) {
        %v = memref.load %p[%j] : memref<4096xf32, #gpu.address_space<workgroup>>
        %shifted = arith.subf %v, %max : f32
        %e = math.exp %shifted : f32
        memref.store %e, %p[%j] : memref<4096xf32, #gpu.address_space<workgroup>>
        %next = arith.addf %acc, %e : f32
        scf.yield %next : f32
      }
      %sum = gpu.all_reduce add %localsum uniform {} : (f32) -> (f32)
      gpu.barrier
      %inv = arith.divf %one, %sum : f32
      %o0 = arith.muli %bs, %width : index
      %obase = arith.addi %o0, %hd : index
      scf.for %d = %tid to %dim step %threads {
        %vbase = arith.addi %kvbase, %d : index
        %acc = scf.for %j = %c0 to %keys step %c1 iter_args(%a = %zero) -> (f32) {
          %pj = memref.load %p[%j] : memref<4096xf32, #gpu.address_space<workgroup>>
          %vr = arith.muli %j, %kv_row : index
          %vi = arith.addi %vbase, %vr : index
          %vv = memref.load %values_src[%vi] : memref<?xf32>
          %next = math.fma %pj, %vv, %a : f32
          scf.yield %next : f32
        }
        %o = arith.mulf %acc, %inv : f32
        %oi = arith.addi %obase, %d : index
        memref.store %o, %out[%oi] : memref<?xf32>
        func.call @store_rounded(%o, %out16, %oi, %half) :
            (f32, memref<?xi16>, index, i32) -> ()
      }
      gpu.return
    }

    // The primitive steps of an unfused graph (--no-fuse), as the CPU
    // runs them; simple rather than fast.

    // y[t, i, j] = sum_l a[t, i, l] b_t[l, j], b_t = b[t] ([k, n]) or, with
    // %transpose_b, b[t]^T ([n, k]); b's matrices are %b_stride apart (a
    // KV cache's have spare rows). One thread per element of y.
    gpu.func @batched_matmul(%a: memref<?xf32>, %b: memref<?xf32>, %y: memref<?xf32>,
                             %total: index, %m: index, %k: index, %n: index,
                             %b_stride: index, %transpose_b: i1) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %total : index
      scf.if %inside {
        %c0 = arith.constant 0 : index
        %c1 = arith.constant 1 : index
        %zero = arith.constant 0.0 : f32
        %j = arith.remui %i, %n : index
        %tr = arith.divui %i, %n : index
        %t = arith.divui %tr, %m : index
        %abase = arith.muli %tr, %k : index
        %bbase = arith.muli %t, %b_stride : index
        %sum = scf.for %l = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {
          %ai = arith.addi %abase, %l : index
          %av = memref.load %a[%ai] : memref<?xf32>
          %jk = arith.muli %j, %k : index
          %tb = arith.addi %jk, %l : index
          %ln = arith.muli %l, %n : index
          %nb = arith.addi %ln, %j : index
          %off = arith.select %transpose_b, %tb, %nb : index
          %bi = arith.addi %bbase, %off : index
          %bv = memref.load %b[%bi] : memref<?xf32>
          %next = math.fma %av, %bv, %acc : f32
          scf.yield %next : f32
        }
        memref.store %sum, %y[%i] : memref<?xf32>
      }
      gpu.return
    }

    gpu.func @scale(%x: memref<?xf32>, %y: memref<?xf32>, %n: index, %factor: f32) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %v = memref.load %x[%i] : memref<?xf32>
        %s = arith.mulf %v, %factor : f32
        memref.store %s, %y[%i] : memref<?xf32>
      }
      gpu.return
    }

    // Softmax over each row of %cols: a block per row.
    gpu.func @softmax(%x: memref<?xf32>, %y: memref<?xf32>, %cols: index) kernel {
      %row = gpu.block_id x
      %tid = gpu.thread_id x
      %threads = gpu.block_dim x
      %zero = arith.constant 0.0 : f32
      %lowest = arith.constant -3.40282347E+38 : f32
      %base = arith.muli %row, %cols : index
      %partial = scf.for %j = %tid to %cols step %threads iter_args(%acc = %lowest) -> (f32) {
        %k = arith.addi %base, %j : index
        %v = memref.load %x[%k] : memref<?xf32>
        %next = arith.maximumf %acc, %v : f32
        scf.yield %next : f32
      }
      %largest = gpu.all_reduce maximumf %partial uniform {} : (f32) -> (f32)
      %terms = scf.for %j = %tid to %cols step %threads iter_args(%acc = %zero) -> (f32) {
        %k = arith.addi %base, %j : index
        %v = memref.load %x[%k] : memref<?xf32>
        %d = arith.subf %v, %largest : f32
        %e = math.exp %d : f32
        memref.store %e, %y[%k] : memref<?xf32>
        %next = arith.addf %acc, %e : f32
        scf.yield %next : f32
      }
      %sum = gpu.all_reduce add %terms uniform {} : (f32) -> (f32)
      scf.for %j = %tid to %cols step %threads {
        %k = arith.addi %base, %j : index
        %e = memref.load %y[%k] : memref<?xf32>
        %p = arith.divf %e, %sum : f32
        memref.store %p, %y[%k] : memref<?xf32>
      }
      gpu.return
    }

    // scores [batch, heads, queries, keys] with the lowest float where
    // mask[b, key] == 0 (%has_mask) or, %causal, key > query + keys -
    // queries (the keys cached before). One thread per score.
    gpu.func @attention_mask(%x: memref<?xf32>, %y: memref<?xf32>, %mask: memref<?xi64>,
                             %total: index, %heads: index, %queries: index, %keys: index,
                             %causal: i1, %has_mask: i1) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %total : index
      scf.if %inside {
        %key = arith.remui %i, %keys : index
        %r = arith.divui %i, %keys : index
        %q = arith.remui %r, %queries : index
        %hq = arith.muli %heads, %queries : index
        %b = arith.divui %r, %hq : index
        %cached = arith.subi %keys, %queries : index
        %last = arith.addi %q, %cached : index
        %future = arith.cmpi ugt, %key, %last : index
        %hidden = arith.andi %causal, %future : i1
        %padded = scf.if %has_mask -> (i1) {
          %bk = arith.muli %b, %keys : index
          %mi = arith.addi %bk, %key : index
          %mv = memref.load %mask[%mi] : memref<?xi64>
          %none = arith.constant 0 : i64
          %off = arith.cmpi eq, %mv, %none : i64
          scf.yield %off : i1
        } else {
          %no = arith.constant false
          scf.yield %no : i1
        }
        %masked = arith.ori %hidden, %padded : i1
        %v = memref.load %x[%i] : memref<?xf32>
        %lowest = arith.constant -3.40282347E+38 : f32
        %o = arith.select %masked, %lowest, %v : f32
        memref.store %o, %y[%i] : memref<?xf32>
      }
      gpu.return
    }

    // y[a, c, b, d] = x[a, b, c, d]: splitting heads off or merging them.
    // One thread per element.
    gpu.func @swap_middle_axes(%x: memref<?xf32>, %y: memref<?xf32>, %total: index,
                               %nb: index, %nc: index, %nd: index) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %total : index
      scf.if %inside {
        %d = arith.remui %i, %nd : index
        %r1 = arith.divui %i, %nd : index
        %b = arith.remui %r1, %nb : index
        %r2 = arith.divui %r1, %nb : index
        %c = arith.remui %r2, %nc : index
        %a = arith.divui %r2, %nc : index
        %ab = arith.muli %a, %nb : index
        %ab2 = arith.addi %ab, %b : index
        %abc = arith.muli %ab2, %nc : index
        %abc2 = arith.addi %abc, %c : index
        %src0 = arith.muli %abc2, %nd : index
        %src = arith.addi %src0, %d : index
        %v = memref.load %x[%src] : memref<?xf32>
        memref.store %v, %y[%i] : memref<?xf32>
      }
      gpu.return
    }

    // cache[r, past + s, :] = x[r, s, :] for x [rows, seq, dim] and the
    // cache [rows, capacity, dim]: new keys or values appended after the
    // cached ones. One thread per element of x.
    gpu.func @cache_write(%x: memref<?xf32>, %cache: memref<?xf32>, %total: index,
                          %seq_dim: index, %capacity: index, %dim: index,
                          %past_ref: memref<?xi64>) kernel {
      %past = func.call @cached_tokens(%past_ref) : (memref<?xi64>) -> index
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %total : index
      scf.if %inside {
        %r = arith.divui %i, %seq_dim : index
        %rest = arith.remui %i, %seq_dim : index
        %rc = arith.muli %r, %capacity : index
        %rp = arith.addi %rc, %past : index
        %base = arith.muli %rp, %dim : index
        %to = arith.addi %base, %rest : index
        %v = memref.load %x[%i] : memref<?xf32>
        memref.store %v, %cache[%to] : memref<?xf32>
      }
      gpu.return
    }

    // y[r, :] = x[r, :] quantized to int8 and back, as the CPU's dynamic
    // W8A8 takes a linear's input (QuantizedLinear.h): q = x * 127 / max|x|
    // rounded to the nearest (ties to even) and y = q * max|x| / 127; a row
    // with a NaN or infinity becomes NaNs. A block per row.
    gpu.func @quantize_rows(%x: memref<?xf32>, %y: memref<?xf32>, %cols: index) kernel {
      %row = gpu.block_id x
      %tid = gpu.thread_id x
      %threads = gpu.block_dim x
      %zero = arith.constant 0.0 : f32
      %base = arith.muli %row, %cols : index
      %partial = scf.for %j = %tid to %cols step %threads iter_args(%acc = %zero) -> (f32) {
        %k = arith.addi %base, %j : index
        %v = memref.load %x[%k] : memref<?xf32>
        %a = math.absf %v : f32
        %next = arith.maximumf %acc, %a : f32
        scf.yield %next : f32
      }
      %largest = gpu.all_reduce maximumf %partial uniform {} : (f32) -> (f32)
      %limit = arith.constant 127.0 : f32
      %low = arith.constant -127.0 : f32
      %inf = arith.constant 0x7F800000 : f32
      %nan = arith.constant 0x7FC00000 : f32
      %finite = arith.cmpf olt, %largest, %inf : f32
      %positive = arith.cmpf ogt, %largest, %zero : f32
      %ratio = arith.divf %limit, %largest : f32
      %inverse = arith.select %positive, %ratio, %zero : f32
      %scale = arith.divf %largest, %limit : f32
      scf.for %j = %tid to %cols step %threads {
        %k = arith.addi %base, %j : index
        %v = memref.load %x[%k] : memref<?xf32>
        %p = arith.mulf %v, %inverse : f32
        %r = math.roundeven %p : f32
        %c = arith.minimumf %r, %limit : f32
        %q = arith.maximumf %c, %low : f32
        %d = arith.mulf %q, %scale : f32
        %o = arith.select %finite, %d, %nan : f32
        memref.store %o, %y[%k] : memref<?xf32>
      }
      gpu.return
    }

    // w[o, k] = q[o, k] scales[o, k / group]: an int8 matrix widened for a
    // GEMM of many rows, one thread per weight, n = out * in: to f32 in w,
    // or with %half 1 (f16) / 2 (bf16) rounded to that in w16 (raw bits).
    gpu.func @dequantize_int8(%q: memref<?xi8>, %scales: memref<?xf32>, %w: memref<?xf32>,
                              %w16: memref<?xi16>, %n: index, %in: index, %group: index,
                              %half: i32) kernel {
      %i = gpu.global_id x
      %inside = arith.cmpi slt, %i, %n : index
      scf.if %inside {
        %o = arith.divui %i, %in : index
        %k = arith.remui %i, %in : index
        %groups = arith.divui %in, %group : index
        %g = arith.divui %k, %group : index
        %s0 = arith.muli %o, %groups : index
        %si = arith.addi %s0, %g : index
        %s = memref.load %scales[%si] : memref<?xf32>
        %b = memref.load %q[%i] : memref<?xi8>
        %f = arith.sitofp %b : i8 to f32
        %v = arith.mulf %f, %s : f32
        %none = arith.constant 0 : i32
        %wide = arith.cmpi eq, %half, %none : i32
        scf.if %wide {
          memref.store %v, %w[%i] : memref<?xf32>
        } else {
          func.call @store_rounded(%v, %w16, %i, %half) : (f32, memref<?xi16>, index, i32) -> ()
        }
      }
      gpu.return
    }

    // out[t, :] = table[ids[t] - offset, :] for ids in [offset, offset +
    // rows), else zeros (a vocab-parallel shard): one block per token.
    // Ids were range-checked on the host before the launch. An int8 table
    // (%int8; --quantize-embeddings) is q with scales [rows, width /
    // group], %table then unread.
    gpu.func @embedding(%table: memref<?xf32>, %q: memref<?xi8>, %scales: memref<?xf32>,
                        %ids: memref<?xi64>, %out: memref<?xf32>, %width: index,
                        %rows: index, %offset: index, %group: index, %int8: i1) kernel {
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
      %groups = arith.divui %width, %group : index
      %scale_row = arith.muli %row, %groups : index
      scf.for %j = %tid to %width step %threads {
        %k = arith.addi %dst, %j : index
        %v = scf.if %mine -> (f32) {
          %s = arith.addi %src, %j : index
          %x = scf.if %int8 -> (f32) {
            %b = memref.load %q[%s] : memref<?xi8>
            %wide = arith.sitofp %b : i8 to f32
            %g = arith.divui %j, %group : index
            %si = arith.addi %scale_row, %g : index
            %scale = memref.load %scales[%si] : memref<?xf32>
            %y = arith.mulf %wide, %scale : f32
            scf.yield %y : f32
          } else {
            %y = memref.load %table[%s] : memref<?xf32>
            scf.yield %y : f32
          }
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
