// cuBLAS status checking: a failing cuBLAS call throws a typed error naming the status, call, file and line.
#pragma once

#include <cublas_api.h>

#include <stdexcept>
#include <string>

namespace loom::kernels {

class CublasError : public std::runtime_error {
public:
    CublasError(cublasStatus_t status, const std::string& what) : std::runtime_error(what), status_(status) {}
    cublasStatus_t status() const { return status_; }

private:
    cublasStatus_t status_;
};

inline void check_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS)
        throw CublasError(status, std::string(cublasGetStatusName(status)) + " (" + cublasGetStatusString(status) +
                                      ") from " + expr + " at " + file + ":" + std::to_string(line));
}

}  // namespace loom::kernels

#define LOOM_CUBLAS_CHECK(expr) ::loom::kernels::check_cublas((expr), #expr, __FILE__, __LINE__)
