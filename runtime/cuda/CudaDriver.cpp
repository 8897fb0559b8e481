//===- CudaDriver.cpp - the CUDA driver API, loaded at run time -----------===//

#include "runtime/cuda/CudaDriver.h"

#include <cuda.h>
#include <dlfcn.h>

#include <algorithm>
#include <unordered_map>

using namespace megatron::runtime;
using namespace megatron::runtime::cuda;

/// The driver entry points this backend uses, by their versioned names.
struct Device::Api {
  CUcontext context = nullptr;
  CUdevice device = 0;
  CUmodule module = nullptr;
  /// Where everything is queued, copies to and from the host included: a
  /// stream of its own, since the legacy default stream cannot be captured
  /// into a graph. Non-blocking, and only ever synchronized by itself, so
  /// that another user of the device's context (another session, the
  /// application) neither waits for it nor breaks a capture in progress on
  /// it, as the legacy stream and a context-wide synchronization would.
  CUstream stream = nullptr;
  std::unordered_map<std::string, CUfunction> functions;
  std::vector<CUgraphExec> graphs;
  std::vector<CUevent> events;
#define MEGATRON_CUDA_FUNCTIONS(X)                                             \
  X(cuInit, "cuInit")                                                          \
  X(cuDeviceGetCount, "cuDeviceGetCount")                                      \
  X(cuDeviceGet, "cuDeviceGet")                                                \
  X(cuDeviceGetAttribute, "cuDeviceGetAttribute")                              \
  X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")                      \
  X(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2")                 \
  X(cuCtxSetCurrent, "cuCtxSetCurrent")                                        \
  X(cuModuleLoadDataEx, "cuModuleLoadDataEx")                                  \
  X(cuModuleUnload, "cuModuleUnload")                                          \
  X(cuModuleGetFunction, "cuModuleGetFunction")                                \
  X(cuMemAlloc, "cuMemAlloc_v2")                                               \
  X(cuMemFree, "cuMemFree_v2")                                                 \
  X(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2")                                 \
  X(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2")                                 \
  X(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2")                                 \
  X(cuMemcpy2DAsync, "cuMemcpy2DAsync_v2")                                     \
  X(cuLaunchKernel, "cuLaunchKernel")                                          \
  X(cuStreamCreate, "cuStreamCreate")                                          \
  X(cuStreamDestroy, "cuStreamDestroy_v2")                                     \
  X(cuStreamSynchronize, "cuStreamSynchronize")                                \
  X(cuStreamBeginCapture, "cuStreamBeginCapture_v2")                           \
  X(cuStreamEndCapture, "cuStreamEndCapture")                                  \
  X(cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags")                \
  X(cuGraphDestroy, "cuGraphDestroy")                                          \
  X(cuGraphExecDestroy, "cuGraphExecDestroy")                                  \
  X(cuGraphLaunch, "cuGraphLaunch")                                            \
  X(cuEventCreate, "cuEventCreate")                                            \
  X(cuEventDestroy, "cuEventDestroy_v2")                                       \
  X(cuEventRecord, "cuEventRecord")                                            \
  X(cuEventElapsedTime, "cuEventElapsedTime")                                  \
  X(cuGetErrorString, "cuGetErrorString")
#define MEGATRON_CUDA_POINTER(name, symbol) decltype(&::name) name = nullptr;
  MEGATRON_CUDA_FUNCTIONS(MEGATRON_CUDA_POINTER)
#undef MEGATRON_CUDA_POINTER

  Status check(CUresult code, const char *what) const {
    if (code == CUDA_SUCCESS)
      return Status::success();
    const char *text = nullptr;
    if (cuGetErrorString)
      cuGetErrorString(code, &text);
    return Status::error(std::string("CUDA driver: ") + what + ": " +
                         (text ? text : "error " + std::to_string(int(code))));
  }

  /// Opens the driver library and resolves every entry point. The library
  /// stays loaded: unloading a driver that has been initialised is not safe.
  Status load() {
    struct Library {
      void *handle;
      std::string error;
    };
    static const Library driver = [] {
      void *handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
      return Library{handle, handle ? "" : dlerror()};
    }();
    if (!driver.handle)
      return Status::error("the CUDA driver is not installed (" + driver.error + ")");
    void *library = driver.handle;
#define MEGATRON_CUDA_RESOLVE(name, symbol)                                    \
  name = reinterpret_cast<decltype(name)>(dlsym(library, symbol));             \
  if (!name)                                                                   \
    return Status::error("the CUDA driver lacks " symbol " (too old?)");
    MEGATRON_CUDA_FUNCTIONS(MEGATRON_CUDA_RESOLVE)
#undef MEGATRON_CUDA_RESOLVE
    return check(cuInit(0), "cuInit");
  }

  /// Makes the device's context the calling thread's: a session's calls
  /// may come from any thread, and tensor-parallel ranks run on threads of
  /// their own. Each entry point that can start a call does this.
  Status current() const { return check(cuCtxSetCurrent(context), "cuCtxSetCurrent"); }
};

Device::~Device() {
  if (!api_)
    return;
  if (api_->context)
    (void)api_->current();
  dropGraphs();
  for (CUevent e : api_->events)
    api_->cuEventDestroy(e);
  if (api_->stream)
    api_->cuStreamDestroy(api_->stream);
  if (api_->module)
    api_->cuModuleUnload(api_->module);
  if (api_->context)
    api_->cuDevicePrimaryCtxRelease(api_->device);
}

Status Device::count(int &devices) {
  Api api;
  if (Status s = api.load(); !s.ok())
    return s;
  return api.check(api.cuDeviceGetCount(&devices), "cuDeviceGetCount");
}

Status Device::open(int ordinal, std::unique_ptr<Device> &out) {
  std::unique_ptr<Device> device(new Device());
  device->api_ = std::make_unique<Api>();
  Api &api = *device->api_;
  if (Status s = api.load(); !s.ok())
    return s;
  int count = 0;
  if (Status s = api.check(api.cuDeviceGetCount(&count), "cuDeviceGetCount"); !s.ok())
    return s;
  if (ordinal < 0 || ordinal >= count)
    return Status::error("no CUDA device " + std::to_string(ordinal) + " (this machine has " +
                         std::to_string(count) + ")");
  if (Status s = api.check(api.cuDeviceGet(&api.device, ordinal), "cuDeviceGet"); !s.ok())
    return s;
  int major = 0, minor = 0;
  api.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, api.device);
  api.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, api.device);
  device->arch_ = "sm_" + std::to_string(major) + std::to_string(minor);
  if (Status s = api.check(api.cuDevicePrimaryCtxRetain(&api.context, api.device),
                           "cuDevicePrimaryCtxRetain");
      !s.ok())
    return s;
  if (Status s = api.current(); !s.ok())
    return s;
  if (Status s = api.check(api.cuStreamCreate(&api.stream, CU_STREAM_NON_BLOCKING),
                           "cuStreamCreate");
      !s.ok())
    return s;
  out = std::move(device);
  return Status::success();
}

Status Device::loadModule(const std::string &ptx) {
  if (Status s = api_->current(); !s.ok())
    return s;
  char log[8192] = {0};
  CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {log, reinterpret_cast<void *>(sizeof(log))};
  if (api_->module) {
    api_->cuModuleUnload(api_->module);
    api_->module = nullptr;
    api_->functions.clear();
  }
  CUresult code = api_->cuModuleLoadDataEx(&api_->module, ptx.c_str(), 2, options, values);
  if (code != CUDA_SUCCESS)
    return Status::error(api_->check(code, "loading PTX").message() +
                         (log[0] ? std::string(": ") + log : ""));
  return Status::success();
}

Status Device::allocate(size_t bytes, uint64_t &pointer) {
  if (Status s = api_->current(); !s.ok())
    return s;
  CUdeviceptr p = 0;
  if (Status s = api_->check(api_->cuMemAlloc(&p, bytes ? bytes : 1), "cuMemAlloc"); !s.ok())
    return s;
  pointer = static_cast<uint64_t>(p);
  return Status::success();
}

Status Device::free(uint64_t pointer) {
  if (Status s = api_->current(); !s.ok())
    return s;
  return api_->check(api_->cuMemFree(static_cast<CUdeviceptr>(pointer)), "cuMemFree");
}

Status Device::copyToDevice(uint64_t pointer, const void *host, size_t bytes) {
  if (Status s = api_->current(); !s.ok())
    return s;
  if (Status s = api_->check(api_->cuMemcpyHtoDAsync(static_cast<CUdeviceptr>(pointer), host,
                                                     bytes, api_->stream),
                             "cuMemcpyHtoDAsync");
      !s.ok())
    return s;
  return synchronize(); // the caller may reuse `host` at once
}

Status Device::copyToHost(void *host, uint64_t pointer, size_t bytes) {
  if (Status s = api_->current(); !s.ok())
    return s;
  if (Status s = api_->check(api_->cuMemcpyDtoHAsync(host, static_cast<CUdeviceptr>(pointer),
                                                     bytes, api_->stream),
                             "cuMemcpyDtoHAsync");
      !s.ok())
    return s;
  return synchronize();
}

Status Device::copyOnDevice(uint64_t to, uint64_t from, size_t bytes) {
  return api_->check(api_->cuMemcpyDtoDAsync(static_cast<CUdeviceptr>(to),
                                             static_cast<CUdeviceptr>(from), bytes, api_->stream),
                     "cuMemcpyDtoDAsync");
}

Status Device::copyRows(uint64_t to, size_t toPitch, uint64_t from, size_t fromPitch,
                        size_t rowBytes, size_t rows) {
  if (rowBytes == 0 || rows == 0)
    return Status::success();
  // Contiguous: one plain copy (2-D copies also cap their pitches).
  if (rows == 1 || (toPitch == rowBytes && fromPitch == rowBytes))
    return copyOnDevice(to, from, rowBytes * rows);
  CUDA_MEMCPY2D copy{};
  copy.srcMemoryType = copy.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  copy.srcDevice = static_cast<CUdeviceptr>(from);
  copy.srcPitch = fromPitch;
  copy.dstDevice = static_cast<CUdeviceptr>(to);
  copy.dstPitch = toPitch;
  copy.WidthInBytes = rowBytes;
  copy.Height = rows;
  return api_->check(api_->cuMemcpy2DAsync(&copy, api_->stream), "cuMemcpy2DAsync");
}

Status Device::launch(const std::string &name, const unsigned grid[3], const unsigned block[3],
                      unsigned sharedBytes, std::vector<void *> params) {
  if (!api_->module)
    return Status::error("no PTX module is loaded");
  CUfunction &function = api_->functions[name];
  if (!function)
    if (Status s = api_->check(api_->cuModuleGetFunction(&function, api_->module, name.c_str()),
                               ("kernel '" + name + "'").c_str());
        !s.ok())
      return s;
  return api_->check(api_->cuLaunchKernel(function, grid[0], grid[1], grid[2], block[0], block[1],
                                          block[2], sharedBytes, api_->stream, params.data(),
                                          nullptr),
                     ("launching '" + name + "'").c_str());
}

Status Device::synchronize() {
  if (Status s = api_->current(); !s.ok())
    return s;
  return api_->check(api_->cuStreamSynchronize(api_->stream), "running the queued kernels");
}

void *Device::stream() const { return api_->stream; }

Status Device::recordEvent(size_t index) {
  if (Status s = api_->current(); !s.ok())
    return s;
  while (api_->events.size() <= index) {
    CUevent event = nullptr;
    if (Status s = api_->check(api_->cuEventCreate(&event, CU_EVENT_DEFAULT), "cuEventCreate");
        !s.ok())
      return s;
    api_->events.push_back(event);
  }
  return api_->check(api_->cuEventRecord(api_->events[index], api_->stream), "cuEventRecord");
}

Status Device::eventSeconds(size_t from, size_t to, double &seconds) {
  if (std::max(from, to) >= api_->events.size())
    return Status::error("timing events that were never recorded");
  float ms = 0;
  Status s = api_->check(api_->cuEventElapsedTime(&ms, api_->events[from], api_->events[to]),
                         "cuEventElapsedTime");
  seconds = ms * 1e-3;
  return s;
}

Status Device::beginCapture() {
  // Relaxed: cuBLASLt may pick its algorithms (host-side calls) meanwhile.
  return api_->check(api_->cuStreamBeginCapture(api_->stream, CU_STREAM_CAPTURE_MODE_RELAXED),
                     "starting a CUDA graph capture");
}

Status Device::endCapture(uint32_t *graph) {
  CUgraph recorded = nullptr;
  Status s = api_->check(api_->cuStreamEndCapture(api_->stream, &recorded),
                         "ending a CUDA graph capture");
  if (s.ok() && graph) {
    CUgraphExec exec = nullptr;
    s = api_->check(api_->cuGraphInstantiateWithFlags(&exec, recorded, 0),
                    "instantiating a CUDA graph");
    if (s.ok()) {
      *graph = static_cast<uint32_t>(api_->graphs.size());
      api_->graphs.push_back(exec);
    }
  }
  if (recorded)
    api_->cuGraphDestroy(recorded);
  return s;
}

void Device::dropGraphs() {
  if (api_->graphs.empty() || !api_->current().ok())
    return;
  for (CUgraphExec g : api_->graphs)
    api_->cuGraphExecDestroy(g);
  api_->graphs.clear();
}

Status Device::launchGraph(uint32_t graph) {
  return api_->check(api_->cuGraphLaunch(api_->graphs.at(graph), api_->stream),
                     "launching a CUDA graph");
}
