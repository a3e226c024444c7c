// Status and Result<T>: the one error type of Custos.
//
// A Status is either OK or carries a code from a closed set plus a message
// naming the object and the place ("storage: pack 3fa2..: Corruption").
// Codes exist only where a caller branches on them. Result<T> holds a value
// or a non-OK Status (members named like absl::StatusOr).
//
// Thread-safety: values; safe to copy between threads.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace custos {

enum class Code {
  kOk = 0,
  kNotFound,
  kAlreadyExists,
  kInvalidArgument,
  kNotSupported,
  kIOError,
  kCorruption,        // bytes do not parse, or an authentication tag failed
  kIntegrity,         // bytes parse but do not match a recorded hash
  kUnavailable,
  kCancelled,
  kPermissionDenied,
  kBusy,              // held by someone else (the repository writer lock)
  kUnauthenticated,   // no key slot opens with the given secret
  kNoSpace,
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "message: CodeName" or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "prefix: message".
  Status Annotate(std::string_view prefix) const;

  void IgnoreError() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status NotFoundError(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status AlreadyExistsError(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status InvalidArgumentError(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status NotSupportedError(std::string m) { return {Code::kNotSupported, std::move(m)}; }
inline Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
inline Status CorruptionError(std::string m) { return {Code::kCorruption, std::move(m)}; }
inline Status IntegrityError(std::string m) { return {Code::kIntegrity, std::move(m)}; }
inline Status UnavailableError(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status CancelledError(std::string m) { return {Code::kCancelled, std::move(m)}; }
inline Status PermissionDeniedError(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
inline Status BusyError(std::string m) { return {Code::kBusy, std::move(m)}; }
inline Status UnauthenticatedError(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }

// Turns an errno value into a Status with the matching code.
Status ErrnoStatus(std::string_view context, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    if (std::get<Status>(v_).ok()) std::abort();  // a Result never holds OK without a value
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { Check(); return std::get<T>(v_); }
  const T& value() const& { Check(); return std::get<T>(v_); }
  T&& value() && { Check(); return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void Check() const {
    if (!ok()) std::abort();  // reading the value of an error is a bug
  }
  std::variant<T, Status> v_;
};

}  // namespace custos

#define CUSTOS_CONCAT_INNER(a, b) a##b
#define CUSTOS_CONCAT(a, b) CUSTOS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::custos::Status _st = (expr);                   \
    if (!_st.ok()) return _st;                       \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F())`: declares x from a Result or returns its Status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(CUSTOS_CONCAT(_res_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
