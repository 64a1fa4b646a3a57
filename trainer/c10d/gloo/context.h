// Declarations only: see README.md beside this file. ProcessGroupGloo's inline
// setTimeout names Context::setTimeout; the shim never calls it.
#pragma once

#include <chrono>

namespace gloo {
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
