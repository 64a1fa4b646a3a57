// plumb's binding to c10d, the collective library under torch.distributed: a process
// group over a TCPStore rendezvous, with Gloo as its backend for CPU tensors and, where
// build.rs found NCCL's and CUDA's headers (PLUMB_NCCL), NCCL for CUDA tensors, and the
// collectives the trainer needs. tch has no binding for c10d; the wheel ships its
// headers and its code is in libtorch_cpu and libtorch_cuda, so this file only adapts it
// to a C interface (trainer/src/distributed.rs).
//
// Every function returns NULL (or 0) on success and otherwise an error message the caller
// frees with plumb_c10d_free_error: c10d reports failures as C++ exceptions, which must
// not cross into Rust.

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef PLUMB_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

// What the Rust side holds: the store must outlive the backends that rendezvoused on it.
struct plumb_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> gloo;
  // Made at the first collective on CUDA tensors, which every rank reaches together (the
  // ranks call the same collectives in the same order), as torch.distributed makes a
  // device's communicator lazily.
  c10::intrusive_ptr<c10d::Backend> nccl;
  std::chrono::milliseconds timeout;
  int rank;
  int world_size;
};

// The backend for `tensor`: NCCL for a CUDA tensor where this build has it, else Gloo
// (which also takes CUDA tensors, through host copies).
static c10d::Backend& backend_for(plumb_group* group, const at::Tensor& tensor) {
#ifdef PLUMB_NCCL
  if (tensor.is_cuda()) {
    if (!group->nccl) {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = group->timeout;
      // Its own key space in the store, as torch.distributed prefixes each group's.
      auto store = c10::make_intrusive<c10d::PrefixStore>("nccl", group->store);
      group->nccl =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(store, group->rank, group->world_size, options);
    }
    return *group->nccl;
  }
#else
  (void)tensor;
#endif
  return *group->gloo;
}

template <typename F>
static char* guarded(F body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("an unknown C++ exception from c10d");
  }
}

static void wait_for(c10::intrusive_ptr<c10d::Work> work) {
  work->wait();
}

extern "C" {

char* plumb_c10d_new(
    const char* master_addr,
    int master_port,
    int rank,
    int world_size,
    int64_t timeout_ms,
    plumb_group** out) {
  return guarded([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(master_port);
    options.isServer = rank == 0;
    options.numWorkers = static_cast<std::size_t>(world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(master_addr), options);
    // create_default picks the device as torch.distributed does: GLOO_SOCKET_IFNAME when
    // set, else this host's address, else loopback.
    auto gloo_options = c10d::ProcessGroupGloo::Options::create_default(timeout);
    gloo_options->threads = 1;
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, gloo_options);
    *out = new plumb_group{store, gloo, {}, timeout, rank, world_size};
  });
}

void plumb_c10d_free(plumb_group* group) {
  // NCCL's communicators are shut down as destroy_process_group does, not left to the
  // destructor, which warns that they were not.
  if (group->nccl) {
    try {
      group->nccl->shutdown();
    } catch (...) {
    }
  }
  delete group;
}

void plumb_c10d_free_error(char* error) {
  free(error);
}

// Sums `tensor` over the ranks, in place.
char* plumb_c10d_all_reduce_sum(plumb_group* group, at::Tensor* tensor) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    wait_for(backend_for(group, *tensor).allreduce(tensors, options));
  });
}

// Overwrites `tensor` with the root rank's.
char* plumb_c10d_broadcast(plumb_group* group, at::Tensor* tensor, int root) {
  return guarded([&] {
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    wait_for(backend_for(group, *tensor).broadcast(tensors, options));
  });
}

// Fills outputs[r] (world_size tensors shaped as `input`) with rank r's `input`.
char* plumb_c10d_all_gather(plumb_group* group, at::Tensor* input, at::Tensor** outputs) {
  return guarded([&] {
    std::vector<std::vector<at::Tensor>> gathered(1);
    for (int r = 0; r < group->world_size; r++) {
      gathered[0].push_back(*outputs[r]);
    }
    std::vector<at::Tensor> inputs{*input};
    wait_for(backend_for(group, *input).allgather(gathered, inputs));
  });
}

// Whether this build sums CUDA tensors through NCCL.
int plumb_c10d_has_nccl() {
#ifdef PLUMB_NCCL
  return 1;
#else
  return 0;
#endif
}

char* plumb_c10d_barrier(plumb_group* group) {
  return guarded([&] { wait_for(group->gloo->barrier()); });
}

} // extern "C"
