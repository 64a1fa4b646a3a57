// AdamW as one fused kernel: ATen's _fused_adamw_, the kernel behind
// torch.optim.AdamW(fused=True), which tch does not bind. One pass over each parameter
// updates it and both moments, where the same update in tch's tensor ops takes a dozen
// passes and as many temporaries (trainer/src/stages/train.rs, `AdamW`).
//
// Returns NULL on success and otherwise an error message the caller frees with
// plumb_aten_free_error: ATen reports failures as C++ exceptions, which must not cross
// into Rust.

#include <cstring>
#include <vector>

#include <ATen/ATen.h>

static std::vector<at::Tensor> list(at::Tensor** tensors, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) {
    out.push_back(*tensors[i]);
  }
  return out;
}

extern "C" {

// One AdamW update of `n` parameters with their gradients and moments, all on one
// device in one dtype, at Adam's step `step` (from 1); `steps` are the parameters'
// scalar float step tensors on that device, set to `step` here.
char* plumb_aten_fused_adamw(
    at::Tensor** params,
    at::Tensor** grads,
    at::Tensor** exp_avgs,
    at::Tensor** exp_avg_sqs,
    at::Tensor** steps,
    int n,
    int64_t step,
    double lr,
    double beta1,
    double beta2,
    double weight_decay,
    double eps) {
  try {
    auto state_steps = list(steps, n);
    for (auto& s : state_steps) {
      s.fill_(static_cast<double>(step));
    }
    at::_fused_adamw_(
        list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), {}, state_steps,
        lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("an unknown C++ exception from ATen's fused AdamW");
  }
}

void plumb_aten_free_error(char* error) {
  free(error);
}

} // extern "C"
