#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace custos {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kNotFound: return "NotFound";
    case Code::kAlreadyExists: return "AlreadyExists";
    case Code::kInvalidArgument: return "InvalidArgument";
    case Code::kNotSupported: return "NotSupported";
    case Code::kIOError: return "IOError";
    case Code::kCorruption: return "Corruption";
    case Code::kIntegrity: return "Integrity";
    case Code::kUnavailable: return "Unavailable";
    case Code::kCancelled: return "Cancelled";
    case Code::kPermissionDenied: return "PermissionDenied";
    case Code::kBusy: return "Busy";
    case Code::kUnauthenticated: return "Unauthenticated";
    case Code::kNoSpace: return "NoSpace";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return message_ + ": " + CodeName(code_);
}

Status Status::Annotate(std::string_view prefix) const {
  if (ok()) return *this;
  return Status(code_, std::string(prefix) + ": " + message_);
}

Status ErrnoStatus(std::string_view context, int err) {
  std::string msg = std::string(context) + ": " + std::strerror(err);
  switch (err) {
    case ENOENT: return NotFoundError(msg);
    case EEXIST: return AlreadyExistsError(msg);
    case EACCES:
    case EPERM:
    case EROFS: return PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT: return Status(Code::kNoSpace, msg);
    case EINTR: return CancelledError(msg);
    case EWOULDBLOCK: return BusyError(msg);
    default: return IOError(msg);
  }
}

}  // namespace custos
